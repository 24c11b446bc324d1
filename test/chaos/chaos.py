#!/usr/bin/env python3
"""The chaos suite (issue 12; test/chaos/README.md): three real dledger-actors
processes, each in its own network namespace with its own address, several
groups, a load driver (chaos-load) recording every acknowledged append, and
faults drawn at random from a seeded schedule. After healing every fault the
checker (chaos-check) reads every member of every group and reports acked /
verified / lost / mismatched / disagreeing indexes.

    test/chaos/chaos.py --build build [--minutes N] [--seed S] [--faults k1,k2]

Fault kinds: kill9, stop (SIGSTOP/SIGCONT), partition (one node cut off from
the others), oneway (one node's packets to another dropped), leader (the
node leading a group cut off), wipe (a member's directory removed while its
node is down), diskfull (the node's tmpfs filled), flip (one byte of an entry
body flipped in a stopped node's segment).

Everything the suite makes (namespaces, veth pairs, the bridge, tmpfs
mounts, nftables tables, processes) is removed on exit, also on SIGINT,
SIGTERM and failure. Every wait is bounded. Exit status: 0 pass, 1 fail
(the seed is printed either way), 2 usage.
"""
import argparse
import ctypes
import glob
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

KINDS = ["kill9", "stop", "partition", "oneway", "leader", "wipe", "diskfull", "flip"]
GROUPS = ["c0", "c1", "c2", "c3"]
PREFERRED = {"c0": "n0", "c1": "n1", "c2": "n2"}  # c3: none, elections decide
PORT = 7000
NODES = 3
MAX_ACTIVE = 2          # faults active at once, on disjoint nodes
HOLD_S = (3.0, 10.0)    # how long a fault stays before it is healed
GAP_S = (4.0, 12.0)     # from one fault's start to the next one's
STOP_WAIT_S = 10        # a node asked to stop gets this long, then SIGKILL
LEADER_WAIT_S = 60      # at start: every group must have a leader by then

ENTRY_MAGIC = 0x31454c44  # docs/STORAGE.md, "Entry (data segments)"
ENTRY_HDR = 48


CHECK_ROUNDS = 3  # checks after the heal (see the end of main())


def log(msg):
    print(msg, flush=True)


def run(cmd, timeout=20, check=True, input=None):
    """Runs a command, bounded; returns its stdout."""
    r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r.stdout


def quiet(cmd, timeout=20):
    """Cleanup: run, ignore every failure."""
    try:
        subprocess.run(cmd, capture_output=True, timeout=timeout)
    except Exception:
        pass


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: a node outlives no orchestrator killed with -9.
    _libc.prctl(1, signal.SIGTERM, 0, 0, 0)


class Cluster:
    def __init__(self, args, rng):
        self.a = args
        self.rng = rng
        tag = str(os.getpid())
        self.dir = os.path.abspath(args.dir or "/tmp/dledger-chaos-" + tag)
        self.ns = ["dlchaos%sn%d" % (tag, k) for k in range(NODES)]
        self.veth = ["dlc%sv%d" % (tag, k) for k in range(NODES)]
        self.bridge = "dlc%sbr" % tag
        self.net = None
        self.addr = []
        self.procs = [None] * NODES   # Popen of each node, None while down
        self.expected_down = set()    # nodes we stopped on purpose
        self.stopped = set()          # nodes under SIGSTOP
        self.tables = {}              # nft table name -> node
        self.fillers = set()          # nodes whose disk is full
        self.mounted = []
        self.made_links = []
        self.made_ns = []
        self.load = None
        self.exits = []               # unexpected node exits: (time, node, status)
        self.t0 = time.monotonic()
        self.actors = os.path.join(args.build, "cmd", "dledger-actors")
        self.ctl = os.path.join(args.build, "cmd", "dledger-ctl")
        self.loadbin = os.path.join(args.build, "test", "chaos", "chaos-load")
        self.checkbin = os.path.join(args.build, "test", "chaos", "chaos-check")

    def now(self):
        return time.monotonic() - self.t0

    def say(self, msg):
        log("[%7.1fs] %s" % (self.now(), msg))

    # ---- network ---------------------------------------------------------

    def pick_subnet(self):
        used = run(["ip", "-4", "-o", "addr"])
        for x in list(range(os.getpid() % 200 + 20, 250)) + list(range(20, 250)):
            if ("10.213.%d." % x) not in used:
                return "10.213.%d" % x
        raise RuntimeError("no free 10.213.X.0/24 subnet")

    def setup_net(self):
        self.net = self.pick_subnet()
        self.addr = ["%s.%d" % (self.net, k + 1) for k in range(NODES)]
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self.made_links.append(self.bridge)
        run(["ip", "addr", "add", self.net + ".254/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for k in range(NODES):
            ns, v = self.ns[k], self.veth[k]
            run(["ip", "netns", "add", ns])
            self.made_ns.append(ns)
            run(["ip", "link", "add", v, "type", "veth", "peer", "name", v + "p"])
            self.made_links.append(v)
            run(["ip", "link", "set", v + "p", "netns", ns])
            run(["ip", "-n", ns, "link", "set", v + "p", "name", "eth0"])
            run(["ip", "-n", ns, "addr", "add", self.addr[k] + "/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "link", "set", v, "master", self.bridge])
            run(["ip", "link", "set", v, "up"])
        self.say("network: bridge %s %s.254/24, nodes %s in namespaces %s"
                 % (self.bridge, self.net, ", ".join(self.addr), ", ".join(self.ns)))

    def nft(self, node, script):
        run(["ip", "netns", "exec", self.ns[node], "nft", "-f", "-"], input=script)

    def drop_table(self, name):
        node = self.tables.pop(name, None)
        if node is not None:
            quiet(["ip", "netns", "exec", self.ns[node], "nft", "delete", "table", "inet", name])

    def isolate(self, name, node):
        """Cuts `node` off from the other nodes, both ways (the load driver
        on the bridge still reaches it, as clients would a stale leader)."""
        others = ", ".join(self.addr[j] for j in range(NODES) if j != node)
        self.nft(node, """table inet %s {
  chain in { type filter hook input priority 0; policy accept; ip saddr { %s } drop; }
  chain out { type filter hook output priority 0; policy accept; ip daddr { %s } drop; }
}
""" % (name, others, others))
        self.tables[name] = node

    def one_way(self, name, src, dst):
        """Drops what `src` sends to `dst`; `dst` still reaches `src`."""
        self.nft(dst, """table inet %s {
  chain in { type filter hook input priority 0; policy accept; ip saddr %s drop; }
}
""" % (name, self.addr[src]))
        self.tables[name] = dst

    # ---- storage ---------------------------------------------------------

    def store(self, k):
        return os.path.join(self.dir, "node%d" % k, "store")

    def setup_disks(self):
        for k in range(NODES):
            d = self.store(k)
            os.makedirs(d)
            run(["mount", "-t", "tmpfs", "-o", "size=%dm" % self.a.disk_mib, "tmpfs", d])
            self.mounted.append(d)

    def fill_disk(self, k):
        path = os.path.join(self.store(k), "filler")
        st = os.statvfs(self.store(k))
        with open(path, "wb") as f:
            free = st.f_bavail * st.f_frsize
            if free > 1 << 20:
                os.posix_fallocate(f.fileno(), 0, free - (1 << 20))
            chunk = b"\0" * 65536
            for _ in range(1 << 16):  # bounded: at most 4 GiB of chunks
                try:
                    f.write(chunk)
                    f.flush()
                except OSError:
                    break
        self.fillers.add(k)

    def free_disk(self, k):
        try:
            os.unlink(os.path.join(self.store(k), "filler"))
        except FileNotFoundError:
            pass
        self.fillers.discard(k)

    # ---- nodes -----------------------------------------------------------

    def peers(self):
        return ";".join("n%d-%s:%d" % (k, self.addr[k], PORT) for k in range(NODES))

    def write_configs(self):
        for k in range(NODES):
            lines = [
                "storeBaseDir: %s" % self.store(k),
                "controlSocket: %s" % os.path.join(self.dir, "node%d" % k, "control.sock"),
                "heartBeatTimeIntervalMs: 200",
                "electionTimeoutMs: 1000",
                # small files so a node's groups fit its tmpfs
                "mappedFileSizeForEntryData: 4m",
                "mappedFileSizeForEntryIndex: 1m",
                # nothing may be cleaned: the checker reads every index
                "enableDiskForceClean: false",
                "DLedgerConfigs:",
            ]
            for g in GROUPS:
                lines += ["  - group: %s" % g, "    id: n%d" % k, "    peers: %s" % self.peers()]
                if g in PREFERRED:
                    lines.append("    preferredLeaderId: %s" % PREFERRED[g])
            with open(os.path.join(self.dir, "node%d.yaml" % k), "w") as f:
                f.write("\n".join(lines) + "\n")

    def start(self, k):
        assert self.procs[k] is None
        logf = open(os.path.join(self.dir, "node%d.log" % k), "ab")
        self.procs[k] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[k], self.actors, "--config",
             os.path.join(self.dir, "node%d.yaml" % k)],
            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent)
        logf.close()
        self.expected_down.discard(k)

    def stop(self, k, sig):
        """Stops node k with `sig` (SIGKILL or SIGTERM), bounded wait."""
        p = self.procs[k]
        if p is None:
            return
        self.expected_down.add(k)
        try:
            if k in self.stopped:
                os.kill(p.pid, signal.SIGCONT)
                self.stopped.discard(k)
            os.kill(p.pid, sig)
            p.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=STOP_WAIT_S)
        except ProcessLookupError:
            pass
        self.procs[k] = None

    def poll_exits(self):
        """A node that exited without being told to is a finding: record
        it and start it again so the run goes on."""
        for k in range(NODES):
            p = self.procs[k]
            if p is not None and p.poll() is not None:
                self.exits.append((self.now(), k, p.returncode))
                self.say("NODE EXIT: n%d exited by itself with status %d (see node%d.log); "
                         "restarting it" % (k, p.returncode, k))
                self.procs[k] = None
                self.start(k)

    def metadata(self):
        """Every member's row as its node knows it; nodes that do not answer
        are missing. [] on failure."""
        try:
            out = run([self.ctl, "metadata", "--peers", self.peers(), "--json",
                       "--timeout", "1500"], timeout=15, check=False)
            return json.loads(out) if out.strip() else []
        except Exception:
            return []

    def node_of(self, address):
        host = address.rsplit(":", 1)[0]
        return self.addr.index(host) if host in self.addr else None

    def converged(self, rows):
        """Every group: all members answer, agree on one leader of one term,
        and have committed the leader's last index."""
        lag = []
        for g in GROUPS:
            mine = [r for r in rows if r.get("group") == g]
            leaders = [r for r in mine if r.get("role") == "leader"]
            if len(mine) < NODES or len(leaders) != 1:
                lag.append("%s: %d of %d members answer, %d leader(s)"
                           % (g, len(mine), NODES, len(leaders)))
                continue
            ld = leaders[0]
            for r in mine:
                if (r.get("leader") != ld["member"] or r.get("term") != ld["term"]
                        or r.get("commit_index") != ld["last_index"]
                        or r.get("last_index") != ld["last_index"]):
                    lag.append("%s/%s %s term %s leader %s last %s commit %s (leader %s last %s)"
                               % (g, r.get("member"), r.get("role"), r.get("term"),
                                  r.get("leader") or "-", r.get("last_index"),
                                  r.get("commit_index"), ld["member"], ld["last_index"]))
        return lag

    def wait_leaders(self, bound_s):
        end = time.monotonic() + bound_s
        while time.monotonic() < end:
            rows = self.metadata()
            have = {r["group"] for r in rows if r.get("role") == "leader"}
            if all(g in have for g in GROUPS):
                return True
            time.sleep(0.3)
        return False

    # ---- cleanup ---------------------------------------------------------

    def cleanup(self):
        if self.load is not None and self.load.poll() is None:
            self.load.kill()
            try:
                self.load.wait(timeout=5)
            except Exception:
                pass
        for k in range(NODES):
            p = self.procs[k]
            if p is None:
                continue
            try:
                os.kill(p.pid, signal.SIGCONT)
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=STOP_WAIT_S)
            except Exception:
                pass
            self.procs[k] = None
        for d in reversed(self.mounted):
            quiet(["umount", d]) if os.path.ismount(d) else None
            if os.path.ismount(d):
                quiet(["umount", "-l", d])
        self.mounted = []
        for ns in self.made_ns:
            quiet(["ip", "netns", "del", ns])
        self.made_ns = []
        for l in reversed(self.made_links):
            quiet(["ip", "link", "del", l])
        self.made_links = []


# ---- faults ------------------------------------------------------------------

class Fault:
    def __init__(self, fid, kind, nodes, heal_at, what):
        self.fid, self.kind, self.nodes, self.heal_at, self.what = fid, kind, nodes, heal_at, what
        self.heal = None  # callable
        self.healed = False
        # After the heal, the fault stays active (holding its nodes and, for
        # a data-loss fault, the one data-loss slot) until done() is true.
        self.done = lambda: True


def flip_one_byte(c, k, rng):
    """Flips one byte of one entry body in a segment of one of node k's
    members (node stopped). Returns a description, or None if no member of
    the node had an entry with a body."""
    groups = GROUPS[:]
    rng.shuffle(groups)
    for g in groups:
        files = sorted(glob.glob(os.path.join(c.store(k), g, "n%d" % k, "data", "*")))
        cands = []
        for f in files:
            with open(f, "rb") as fh:
                buf = fh.read()
            off = 0
            while off + ENTRY_HDR <= len(buf):  # bounded by the file's size
                magic, _ver, _typ, flags, total, body, index = struct.unpack_from(
                    "<IBBHIIQ", buf, off)
                if magic != ENTRY_MAGIC or flags & 1 or total < ENTRY_HDR:
                    break
                if body > 0:
                    cands.append((f, off, body, index))
                off += total
        if not cands:
            continue
        f, off, body, index = rng.choice(cands)
        at = off + ENTRY_HDR + rng.randrange(body)
        with open(f, "r+b") as fh:
            fh.seek(at)
            b = fh.read(1)[0]
            fh.seek(at)
            fh.write(bytes([b ^ (1 << rng.randrange(8))]))
        return g, index, "%s/n%d index %d (%s offset %d)" % (g, k, index, os.path.basename(f), at)
    return None, 0, None


# Faults that lose a member's data. The product's promise (docs/ARCHITECTURE.md,
# "A member that lost its disk") holds while at most one member of a group is
# short of what it acknowledged, so one such fault runs at a time, and it is
# healed only once that member is whole again: caught up and a voter.
DATA_LOSS = ("wipe", "flip")
WHOLE_WAIT_S = 60


def member_whole(c, g, k):
    rows = [r for r in c.metadata() if r.get("group") == g]
    mine = [r for r in rows if r.get("member") == "n%d" % k]
    leaders = [r for r in rows if r.get("role") == "leader"]
    if not mine or len(leaders) != 1:
        return False
    r, ld = mine[0], leaders[0]
    return (r.get("voter") is True and not r.get("stopped")
            and r.get("commit_index", -1) >= ld.get("commit_index", 0) - 100)


def read_entry(c, g, k, index):
    """A damaged entry is found when it is read: read it from that member,
    as a scrub would."""
    run([c.ctl, "get", "--peers", c.peers(), "--group", g, "--member", "n%d" % k,
         "--index", str(index), "--timeout", "2000"], timeout=15, check=False)


def whole_or_late(c, f, g, k):
    """done() of a data-loss fault: n<k> of g is whole again, or it has
    waited WHOLE_WAIT_S since its heal (said, and the slot is freed; the end
    of the run judges what is left). Polled, never blocking other heals."""
    if c.now() < getattr(f, "next_poll", 0):
        return False
    f.next_poll = c.now() + 0.5
    if member_whole(c, g, k):
        return True
    if c.now() > f.heal_at + WHOLE_WAIT_S:
        c.say("n%d of %s not whole again within %d s" % (k, g, WHOLE_WAIT_S))
        return True
    return False


def start_fault(c, kind, fid, busy, rng):
    """Applies one fault of `kind` to nodes not in `busy`. Returns the Fault,
    or None when no target fits now (the kind is drawn again later)."""
    free = [k for k in range(NODES) if k not in busy]
    hold = rng.uniform(*HOLD_S)
    if not free:
        return None
    k = rng.choice(free)
    f = Fault(fid, kind, {k}, c.now() + hold, "")
    if kind == "kill9":
        c.stop(k, signal.SIGKILL)
        f.what = "kill -9 n%d" % k
        f.heal = lambda: c.start(k)
    elif kind == "stop":
        os.kill(c.procs[k].pid, signal.SIGSTOP)
        c.stopped.add(k)
        f.what = "SIGSTOP n%d" % k

        def heal():
            if k in c.stopped and c.procs[k] is not None:
                os.kill(c.procs[k].pid, signal.SIGCONT)
            c.stopped.discard(k)
        f.heal = heal
    elif kind in ("partition", "leader"):
        if kind == "leader":
            rows = c.metadata()
            leads = sorted({(r["group"], c.node_of(r.get("address", "")))
                            for r in rows if r.get("role") == "leader"},
                           key=lambda x: (x[0], -1 if x[1] is None else x[1]))
            leads = [(g, n) for g, n in leads if n in free]
            if not leads:
                return None
            g, k = rng.choice(leads)
            f.nodes = {k}
            f.what = "partition leader n%d (leads %s) from the others" % (k, g)
        else:
            f.what = "partition n%d from the others" % k
        name = "chaos%d" % fid
        c.isolate(name, k)
        f.heal = lambda: c.drop_table(name)
    elif kind == "oneway":
        others = [j for j in free if j != k]
        if not others:
            return None
        dst = rng.choice(others)
        f.nodes = {k, dst}
        name = "chaos%d" % fid
        c.one_way(name, k, dst)
        f.what = "one-way: n%d -> n%d dropped" % (k, dst)
        f.heal = lambda: c.drop_table(name)
    elif kind == "wipe":
        g = rng.choice(GROUPS)
        c.stop(k, signal.SIGKILL)
        shutil.rmtree(os.path.join(c.store(k), g, "n%d" % k), ignore_errors=True)
        c.start(k)
        f.what = "wipe %s/n%d (kill -9, rm -r its directory, restart)" % (g, k)
        f.heal = lambda: None
        f.done = lambda: whole_or_late(c, f, g, k)
    elif kind == "diskfull":
        c.fill_disk(k)
        f.what = "disk of n%d full" % k
        f.heal = lambda: c.free_disk(k)
    elif kind == "flip":
        c.stop(k, signal.SIGTERM)
        g, index, where = flip_one_byte(c, k, rng)
        c.start(k)
        f.what = "flip a byte: %s" % (where or "n%d: no entry to flip" % k)
        f.heal = (lambda: read_entry(c, g, k, index)) if g else (lambda: None)
        if g:
            f.done = lambda: whole_or_late(c, f, g, k)
    return f


def schedule(c, kinds, rng, phase_s, counts):
    """Runs the fault phase: draws kinds from a shuffled deck (every kind
    once per round), at most MAX_ACTIVE at once on disjoint nodes, each
    healed after HOLD_S. Returns when the phase is over, everything healed."""
    deck, active, fid = [], [], 0
    gap_hi = min(GAP_S[1], max(GAP_S[0], 0.8 * phase_s / max(1, len(kinds))))
    next_at = c.now() + rng.uniform(GAP_S[0] / 2, gap_hi / 2)
    end = c.now() + phase_s
    while c.now() < end:  # bounded by the phase length
        c.poll_exits()
        for f in [f for f in active if c.now() >= f.heal_at]:
            if not f.healed:
                f.heal()
                f.healed = True
                c.say("heal  %3d %-9s %s" % (f.fid, f.kind, f.what))
            if f.done():
                active.remove(f)
        room = end - c.now() > HOLD_S[1] + 1
        if room and c.now() >= next_at and len(active) < MAX_ACTIVE:
            if not deck:
                deck = kinds[:]
                rng.shuffle(deck)
            kind = deck[0]
            busy = set().union(*[f.nodes for f in active]) if active else set()
            lossy = any(f.kind in DATA_LOSS for f in active)
            f = None if kind in DATA_LOSS and lossy else start_fault(c, kind, fid + 1, busy, rng)
            if f is not None:
                deck.pop(0)
                fid += 1
                active.append(f)
                counts[kind] = counts.get(kind, 0) + 1
                c.say("fault %3d %-9s %s (heal in %.1f s)"
                      % (f.fid, kind, f.what, f.heal_at - c.now()))
                next_at = c.now() + rng.uniform(GAP_S[0], gap_hi)
            else:
                next_at = c.now() + 0.5
        time.sleep(0.1)
    for f in active:
        if not f.healed:
            f.heal()
            c.say("heal  %3d %-9s %s" % (f.fid, f.kind, f.what))


def heal_all(c):
    """Whatever a fault may have left: SIGCONT, rules, fillers, dead nodes."""
    for k in list(c.stopped):
        if c.procs[k] is not None:
            os.kill(c.procs[k].pid, signal.SIGCONT)
        c.stopped.discard(k)
    for name in list(c.tables):
        c.drop_table(name)
    for k in list(c.fillers):
        c.free_disk(k)
    for k in range(NODES):
        if c.procs[k] is None:
            c.start(k)


def log_findings(c):
    """Lines of the node logs worth a look: assertions, corruption, storage
    failures."""
    keys = ("assert", "abort", "corrupt", "ECORRUPT", "storage error", "no space", "disk full",
            "FAIL", "panic")
    for k in range(NODES):
        path = os.path.join(c.dir, "node%d.log" % k)
        try:
            lines = open(path, errors="replace").read().splitlines()
        except OSError:
            continue
        hits = [l for l in lines if any(x in l for x in keys)]
        if hits:
            log("node%d.log: %d notable line(s), first ones:" % (k, len(hits)))
            for l in hits[:5]:
                log("    " + l[:200])


def checker_objects(c, acks):
    """The checker is tested too: acks it must call lost (a body the cluster
    never stored, and another ack at an index already acked)."""
    forged = os.path.join(c.dir, "forged.acks")
    first = None
    with open(acks) as f:
        for line in f:
            if line.startswith("c3 "):
                first = line.split()
                break
    with open(forged, "w") as f:
        f.write("c3 999999999 1 c3-forged-never-appended\n")
        if first:
            f.write("%s\n" % " ".join(first))
            f.write("%s %s %s c3-forged-other-body\n" % (first[0], first[1], first[2]))
    r = subprocess.run([c.checkbin, "--peers", c.peers(), "--groups", "c3", "--acks", forged],
                       capture_output=True, text=True, timeout=300)
    return r.returncode == 1 and "LOST c3 index 999999999" in r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="meson build directory")
    ap.add_argument("--minutes", type=float, default=2.0, help="length of the fault phase")
    ap.add_argument("--seed", type=int, default=None, help="seed of the fault schedule")
    ap.add_argument("--faults", default="all", help="comma-separated kinds: " + ",".join(KINDS))
    ap.add_argument("--rate", type=float, default=100, help="appends per second per group")
    ap.add_argument("--window", type=int, default=16, help="appends in flight per group")
    ap.add_argument("--disk-mib", type=int, default=0, help="tmpfs per node [auto]")
    ap.add_argument("--heal-wait", type=float, default=0, help="bound on the catch-up [auto]")
    ap.add_argument("--dir", default=None, help="work directory [/tmp/dledger-chaos-PID]")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    kinds = KINDS[:] if a.faults == "all" else [k for k in a.faults.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        ap.error("unknown fault kind(s) %s; kinds: %s" % (",".join(bad), ",".join(KINDS)))
    if a.minutes <= 0:
        ap.error("--minutes must be positive")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 2**31)
    # data: about (48 header + 32 body + 32 index) bytes per entry per group
    need = int(a.rate * len(GROUPS) * a.minutes * 60 * 112 / 2**20 * 1.5) + 64
    a.disk_mib = a.disk_mib or max(96, need)
    heal_wait = a.heal_wait or min(180, max(30, a.minutes * 10))
    rerun = "./run chaos --minutes %g --seed %d --faults %s" % (a.minutes, a.seed, ",".join(kinds))
    log("chaos: seed %d, %g minute(s), faults %s, %d groups x %d nodes, load %g/s/group, "
        "tmpfs %d MiB/node" % (a.seed, a.minutes, ",".join(kinds), len(GROUPS), NODES, a.rate,
                               a.disk_mib))
    for b in ("cmd/dledger-actors", "cmd/dledger-ctl", "test/chaos/chaos-load",
              "test/chaos/chaos-check"):
        if not os.access(os.path.join(a.build, b), os.X_OK):
            log("chaos: FAIL: %s/%s is missing: build first (./run build)" % (a.build, b))
            return 1
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        log("chaos: FAIL: the suite needs root (network namespaces, tmpfs mounts) and the ip "
            "and nft commands (Debian: iproute2, nftables); it does not pass without running")
        return 1
    rng = random.Random(a.seed)
    c = Cluster(a, rng)

    def on_term(sig, _frame):
        raise SystemExit("chaos: stopped by signal %d, cleaning up" % sig)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    ok = False
    try:
        os.makedirs(c.dir, exist_ok=False)
        try:
            c.setup_net()
        except Exception as e:
            log("chaos: FAIL: cannot create network namespaces, veth pairs and a bridge "
                "(needs root and a kernel with network namespaces): %s" % e)
            return 1
        c.setup_disks()
        c.write_configs()
        for k in range(NODES):
            c.start(k)
        if not c.wait_leaders(LEADER_WAIT_S):
            log("chaos: FAIL: not every group has a leader after %d s (logs in %s)"
                % (LEADER_WAIT_S, c.dir))
            a.keep = True
            return 1
        c.say("cluster up: every group has a leader")
        acks = os.path.join(c.dir, "acks")
        c.load = subprocess.Popen(
            [c.loadbin, "--peers", c.peers(), "--groups", ",".join(GROUPS), "--out", acks,
             "--rate", str(a.rate), "--window", str(a.window), "--seed", str(a.seed),
             "--seconds", str(int(a.minutes * 60 + 600))],
            stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
        counts = {}
        schedule(c, kinds, rng, a.minutes * 60, counts)
        heal_all(c)
        c.say("every fault healed; load runs 5 s more on the healed cluster")
        time.sleep(5)
        c.poll_exits()
        c.load.send_signal(signal.SIGTERM)
        try:
            out, _ = c.load.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            c.load.kill()
            out, _ = c.load.communicate(timeout=10)
        c.say(out.strip() or "load: no report (exit %s)" % c.load.returncode)
        # A read of the checker may be the first to meet a damaged entry
        # (a flipped byte): the member then repairs itself from the leader
        # (docs/OPERATIONS.md, "Damaged entries"), so a check that finds
        # entries only behind or unreadable waits and checks again, at
        # most CHECK_ROUNDS times. A safety finding ends it at once.
        for rnd in range(1, CHECK_ROUNDS + 1):
            c.say("waiting (at most %d s) for every group to have one leader and every "
                  "member to catch up" % heal_wait)
            end = time.monotonic() + heal_wait
            lag = ["no answer yet"]
            while time.monotonic() < end:
                c.poll_exits()
                lag = c.converged(c.metadata())
                if not lag:
                    break
                time.sleep(0.5)
            if lag:
                c.say("NOT HEALED after %d s:" % heal_wait)
                for l in lag[:12]:
                    log("    " + l)
            else:
                c.say("healed: every member caught up")
            c.say("checking every index of every member (round %d)" % rnd)
            r = subprocess.run([c.checkbin, "--peers", c.peers(), "--groups",
                                ",".join(GROUPS), "--acks", acks],
                               capture_output=True, text=True, timeout=900)
            sys.stdout.write(r.stdout)
            sys.stdout.write(r.stderr)
            if r.returncode != 3 or rnd == CHECK_ROUNDS:
                break
            c.say("entries behind or unreadable: members repair what the reads found "
                  "damaged; again")
        objects = checker_objects(c, acks)
        log("checker self-test (forged acks must be called lost): %s"
            % ("ok" if objects else "FAILED"))
        log("faults drawn: " + ", ".join("%s %d" % (k, counts.get(k, 0)) for k in kinds)
            + " (total %d)" % sum(counts.values()))
        for t, k, st in c.exits:
            log("unexpected exit: n%d at %.1f s, status %d" % (k, t, st))
        log_findings(c)
        reasons = []
        if r.returncode == 1:
            reasons.append("safety: lost, mismatched or disagreeing entries")
        elif r.returncode == 3:
            reasons.append("liveness: acked entries missing or unreadable on some member")
        elif r.returncode != 0:
            reasons.append("checker could not ask every member (exit %d)" % r.returncode)
        if lag:
            reasons.append("liveness: not healed in %d s" % heal_wait)
        if c.exits:
            reasons.append("%d unexpected node exit(s)" % len(c.exits))
        if not objects:
            reasons.append("the checker did not object to forged acks")
        ok = not reasons
        log("chaos: %s, seed %d%s" % ("PASS" if ok else "FAIL (" + "; ".join(reasons) + ")",
                                     a.seed, "" if ok else "; rerun: " + rerun))
        return 0 if ok else 1
    except BaseException as e:
        if isinstance(e, SystemExit) and isinstance(e.code, str):
            log(e.code)
        elif isinstance(e, KeyboardInterrupt):
            log("chaos: interrupted, cleaning up")
        else:
            log("chaos: FAIL: %s: %s" % (type(e).__name__, e))
        log("chaos: seed %d; rerun: %s" % (a.seed, rerun))
        return 1
    finally:
        c.cleanup()
        if ok and not a.keep:
            shutil.rmtree(c.dir, ignore_errors=True)
        else:
            log("chaos: logs and the ack file kept in %s" % c.dir)


if __name__ == "__main__":
    sys.exit(main())
