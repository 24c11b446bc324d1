/*
 * An in-process cluster: three nodes on loopback ports, several groups,
 * the real mmap store and flush thread. Also run under ThreadSanitizer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test/lib/tt_net.h"
#include "common/dl_log.h"
#include "common/dl_time.h"
#include "runtime/runtime.h"
#include "storage/sto_internal.h"
#include "test/lib/tt.h"
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#include "test/runtime/tclient.h"
#include "transport/transport.h"
#include "client/client.h"

TT_MAIN_STATE;

/* LeakSanitizer's built-in suppressions (read at the leak check, at exit).
 * The TLS tests' failed and dropped handshakes can end nng 1.5.2's accept
 * loop (the churn test does it on purpose), and nng then never frees the
 * connections it orphaned (the TLS streams left in its transport's lists,
 * the listener that held them; fixed upstream in 2024): when only TLS
 * tests run (meson's runtime-tls and runtime-tls-churn, TT_ONLY=tls_...),
 * allocations under libnng are left out; every other run checks
 * everything. */
const char *__lsan_default_suppressions(void);
__attribute__((used)) const char *__lsan_default_suppressions(void)
{
	const char *only = getenv("TT_ONLY");
	return only != NULL && strncmp(only, "tls_", 4) == 0 ? "leak:libnng.so\n" : "";
}

#define NODES 3
#define GROUPS 4
#define HEARTBEAT_MS 50
#define ELECTION_MS 300

struct cluster {
	char dir[64];
	char addr[NODES][32];
	struct rt_node *node[NODES];
	/* With TLS: DIR/certs (test/lib/tls-certs.sh), the nodes' credentials,
	 * and a client's (what tc_open() dials with). */
	char certs[96];
	struct tp_tls *tls, *client_tls;
	int plain_node; /* with TLS, this node runs without (-1: none) */
};

/* maxPendingBytes of the members start_node() adds (0: the default). */
static uint64_t start_max_pending_bytes;
/* Their heartbeat and election timeout (0: HEARTBEAT_MS, ELECTION_MS). */
static uint32_t start_heartbeat_ms, start_election_ms;

static void group_name(uint32_t g, char *buf) { snprintf(buf, 16, "g%u", g); }
static void member_name(uint32_t k, char *buf) { snprintf(buf, 16, "n%u", k); }

static void start_node(struct cluster *c, uint32_t k)
{
	struct rt_node_config nc;
	rt_node_config_defaults(&nc);
	snprintf(nc.listen_addr, sizeof(nc.listen_addr), "%s", c->addr[k]);
	nc.tls = (int)k == c->plain_node ? NULL : c->tls;
	struct dl_errctx err = {{0}};
	int rc = rt_node_start(&nc, &c->node[k], &err);
	tt_assert((rc) == (0), "node %u: %s", k, err.msg);
	for (uint32_t g = 0; g < GROUPS; g++) {
		struct rt_member_config mc;
		rt_member_config_defaults(&mc);
		group_name(g, mc.group);
		member_name(k, mc.self_id);
		mc.n_peers = NODES;
		for (uint32_t i = 0; i < NODES; i++) {
			member_name(i, mc.peers[i].id);
			snprintf(mc.peers[i].addr, sizeof(mc.peers[i].addr), "%s", c->addr[i]);
		}
		member_name(g % NODES, mc.preferred_id);
		mc.heartbeat_ms = start_heartbeat_ms ? start_heartbeat_ms : HEARTBEAT_MS;
		mc.election_ms = start_election_ms ? start_election_ms : ELECTION_MS;
		if (start_max_pending_bytes != 0)
			mc.max_pending_bytes = start_max_pending_bytes;
		mc.store.base_dir = c->dir;
		mc.store.segment_bytes = 1u << 20;
		mc.store.index_segment_bytes = 1u << 16;
		rc = rt_node_add(c->node[k], &mc, &err);
		tt_assert((rc) == (0), "add %s/%s: %s", mc.group, mc.self_id, err.msg);
	}
}

/* Credentials from c->certs: NAME.crt and NAME.key, the CA of `ca_dir`
 * ("" for c->certs itself). */
static struct tp_tls *load_tls(const struct cluster *c, const char *name, const char *ca_dir,
			       bool node)
{
	char crt[160], key[160], ca[160];
	snprintf(crt, sizeof(crt), "%s/%s.crt", c->certs, name);
	snprintf(key, sizeof(key), "%s/%s.key", c->certs, name);
	snprintf(ca, sizeof(ca), "%s/%s%sca.crt", c->certs, ca_dir, ca_dir[0] ? "/" : "");
	struct tp_tls *t = NULL;
	struct dl_errctx err = {{0}};
	tt_assert(tp_tls_load(crt, key, ca, node, &t, &err) == 0, "%s", err.msg);
	return t;
}

/* With `tls`, every node but `plain_node` (-1: none) listens and dials with
 * mutual TLS (a node certificate for 127.0.0.1) and tc_open() dials with a
 * client certificate. */
static void cluster_start_with(struct cluster *c, bool tls, int plain_node)
{
	memset(c, 0, sizeof(*c));
	c->plain_node = plain_node;
	snprintf(c->dir, sizeof(c->dir), "/tmp/dl-rt-XXXXXX");
	tt_assert(mkdtemp(c->dir) != NULL);
	if (tls) {
		snprintf(c->certs, sizeof(c->certs), "%s/certs", c->dir);
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "%s/test/lib/tls-certs.sh %s %s", DL_SOURCE_DIR,
			 DL_SOURCE_DIR, c->certs);
		tt_assert(system(cmd) == 0, "%s", cmd);
		c->tls = load_tls(c, "node-127.0.0.1", "", true);
		c->client_tls = load_tls(c, "client", "", false);
		tc_use_tls(c->client_tls);
	}
	for (uint32_t k = 0; k < NODES; k++)
		snprintf(c->addr[k], sizeof(c->addr[k]), "127.0.0.1:%u", tt_port());
	for (uint32_t k = 0; k < NODES; k++)
		start_node(c, k);
}

static void cluster_start(struct cluster *c) { cluster_start_with(c, false, -1); }

static void cluster_stop(struct cluster *c)
{
	for (uint32_t k = 0; k < NODES; k++) {
		rt_node_stop(c->node[k]);
		c->node[k] = NULL;
	}
	tc_use_tls(NULL);
	tp_tls_free(c->tls);
	tp_tls_free(c->client_tls);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	tt_assert((system(cmd)) == (0));
}

static bool member(struct cluster *c, uint32_t k, uint32_t g, struct rt_member_status *st)
{
	char gn[16], id[16];
	group_name(g, gn);
	member_name(k, id);
	return c->node[k] != NULL && rt_node_member_status(c->node[k], gn, id, st) == 0;
}

/* The node whose member leads group g, as every running member agrees;
 * -1 while they do not. */
static int leader_of(struct cluster *c, uint32_t g)
{
	int leader = -1;
	for (uint32_t k = 0; k < NODES; k++) {
		struct rt_member_status st;
		if (!member(c, k, g, &st))
			continue;
		if (st.leader[0] != 'n')
			return -1;
		int l = atoi(st.leader + 1);
		if (leader != -1 && l != leader)
			return -1;
		leader = l;
	}
	struct rt_member_status st;
	if (leader < 0 || !member(c, (uint32_t)leader, g, &st) || st.role != RAFT_LEADER)
		return -1;
	return leader;
}

static void sleep_ms(unsigned ms) { usleep(ms * 1000); }

/* Waits until every group has an agreed leader (and, if `preferred`, it is
 * the preferred one). */
static bool wait_leaders(struct cluster *c, bool preferred, unsigned timeout_ms)
{
	uint64_t deadline = dl_now_ns() + timeout_ms * 1000000ull;
	while (dl_now_ns() < deadline) {
		bool all = true;
		for (uint32_t g = 0; g < GROUPS && all; g++) {
			int l = leader_of(c, g);
			all = l >= 0 && (!preferred || l == (int)(g % NODES));
		}
		if (all)
			return true;
		sleep_ms(10);
	}
	return false;
}

static uint64_t append_to_group(struct cluster *c, uint32_t g, uint32_t count, const char *tag)
{
	char gn[16];
	group_name(g, gn);
	uint64_t last = 0;
	for (uint32_t i = 0; i < count; i++) {
		char body[64];
		int len = snprintf(body, sizeof(body), "%s-%s-%u", gn, tag, i);
		int rc = -1;
		for (int attempt = 0; attempt < 50 && rc != 0; attempt++) {
			int l = leader_of(c, g);
			if (l < 0) {
				sleep_ms(20);
				continue;
			}
			char id[16];
			member_name((uint32_t)l, id);
			rc = tc_append(c->addr[l], gn, id, body, (uint32_t)len, &last, NULL, 2000);
			if (rc != 0)
				sleep_ms(20);
		}
		tt_assert((rc) == (0), "append %s to %s: %s", body, gn, dl_strerror(rc));
	}
	return last;
}

/* Every running member of g has committed and made durable `index`. */
static bool wait_commit(struct cluster *c, uint32_t g, uint64_t index, unsigned timeout_ms)
{
	uint64_t deadline = dl_now_ns() + timeout_ms * 1000000ull;
	while (dl_now_ns() < deadline) {
		bool all = true;
		for (uint32_t k = 0; k < NODES && all; k++) {
			struct rt_member_status st;
			if (member(c, k, g, &st))
				all = st.commit_index >= index && st.durable_index >= index;
		}
		if (all)
			return true;
		sleep_ms(10);
	}
	return false;
}

static void get_entry(struct cluster *c, uint32_t k, uint32_t g, uint64_t index, char *out,
		      size_t cap)
{
	char gn[16], id[16];
	group_name(g, gn);
	member_name(k, id);
	struct tclient cl;
	tt_assert(tc_open(&cl, c->addr[k]) == 0);
	struct tp_fb fb;
	tp_fb_init(&fb, 1 << 20);
	struct tp_addr a = {.group = gn, .target = id, .sender = "", .request_id = 9};
	struct tp_get req = {.index = index, .to = index};
	tt_assert(tp_fb_add_get(&fb, &a, &req) == 0);
	struct tp_hdr h;
	tt_assert(tc_call(&cl, &fb, 9, &h, 2000) == 0);
	tt_assert((h.type) == (TP_GET_RESP), "got %s", tp_type_name(h.type));
	struct tp_get_resp r;
	struct raft_entry e[4];
	tt_assert(tp_decode_get_resp(&h, &r, e, 4) == 0);
	tt_assert((r.code) == (0));
	tt_assert((r.n) == (1));
	tt_assert((e[0].len) < (cap));
	memcpy(out, e[0].data, e[0].len);
	out[e[0].len] = '\0';
	tp_fb_free(&fb);
	tc_close(&cl);
}

static void groups_elect_replicate_and_commit_on_three_nodes(void)
{
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start(&c);
	tt_assert(wait_leaders(&c, true, 10000), "no preferred leader in every group");
	uint64_t last[GROUPS];
	for (uint32_t g = 0; g < GROUPS; g++)
		last[g] = append_to_group(&c, g, 100, "a");
	for (uint32_t g = 0; g < GROUPS; g++)
		tt_assert(wait_commit(&c, g, last[g], 5000), "g%u not committed everywhere", g);
	/* Read the last entry of g1 from a follower. */
	int l = leader_of(&c, 1);
	uint32_t follower = (uint32_t)(l + 1) % NODES;
	char body[64];
	get_entry(&c, follower, 1, last[1], body, sizeof(body));
	tt_assert(strcmp(body, "g1-a-99") == 0, "got %s", body);
	struct rt_node_stats st;
	rt_node_stats(c.node[0], &st);
	tt_assert((st.frames_out) > (0));
	fprintf(stderr, "coalescing: node0 sent %llu messages in %llu frames (%.2f per frame)\n",
		(unsigned long long)st.msgs_out, (unsigned long long)st.frames_out,
		(double)st.msgs_out / (double)st.frames_out);
	cluster_stop(&c);
}

static void groups_fail_over_when_a_node_stops_and_it_catches_up_on_restart(void)
{
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start(&c);
	tt_assert(wait_leaders(&c, true, 10000));
	uint64_t before = append_to_group(&c, 0, 20, "before");
	tt_assert(wait_commit(&c, 0, before, 5000));
	/* Node 0 leads g0 (its preferred member): stop it. */
	tt_assert(leader_of(&c, 0) == 0);
	rt_node_stop(c.node[0]);
	c.node[0] = NULL;
	uint64_t t0 = dl_now_ns();
	tt_assert(wait_leaders(&c, false, 3 * 2 * ELECTION_MS + 1000), "g0 did not fail over");
	fprintf(stderr, "failover: g0 has a new leader after %.0f ms\n",
		(double)(dl_now_ns() - t0) / 1e6);
	tt_assert(leader_of(&c, 0) != 0);
	uint64_t during = append_to_group(&c, 0, 50, "during");
	tt_assert((during) > (before));
	tt_assert(wait_commit(&c, 0, during, 5000));
	/* Restart: it recovers its store, catches up, and gets g0 back. */
	start_node(&c, 0);
	tt_assert(wait_commit(&c, 0, during, 10000), "node 0 did not catch up");
	tt_assert(wait_leaders(&c, true, 15000), "preferred leaders did not come back");
	char body[64];
	get_entry(&c, 0, 0, during, body, sizeof(body));
	tt_assert(strcmp(body, "g0-during-49") == 0, "got %s", body);
	get_entry(&c, 0, 0, before, body, sizeof(body));
	tt_assert(strcmp(body, "g0-before-19") == 0, "got %s", body);
	cluster_stop(&c);
}

/* Asks member k of g for entry `index`, expecting an error answer; its
 * message goes to msg. */
static int get_error(struct cluster *c, uint32_t k, uint32_t g, uint64_t index, char *msg,
		     size_t cap)
{
	char gn[16], id[16];
	group_name(g, gn);
	member_name(k, id);
	struct tclient cl;
	tt_assert(tc_open(&cl, c->addr[k]) == 0);
	struct tp_fb fb;
	tp_fb_init(&fb, 1 << 20);
	struct tp_addr a = {.group = gn, .target = id, .sender = "", .request_id = 11};
	struct tp_get req = {.index = index, .to = index};
	tt_assert(tp_fb_add_get(&fb, &a, &req) == 0);
	struct tp_hdr h;
	tt_assert(tc_call(&cl, &fb, 11, &h, 2000) == 0);
	tt_assert((h.type) == (TP_ERROR), "got %s", tp_type_name(h.type));
	struct tp_error e;
	tt_assert(tp_decode_error(&h, &e) == 0);
	snprintf(msg, cap, "%s", e.message);
	tp_fb_free(&fb);
	tc_close(&cl);
	return e.code;
}

/* The index file holding entry `index`'s record on node k (group g), and
 * the record's offset in it. */
static off_t record_at(struct cluster *c, uint32_t k, uint32_t g, uint64_t index, char *path,
		       size_t cap)
{
	char gn[16], id[16];
	group_name(g, gn);
	member_name(k, id);
	uint64_t roff = index * STO_IDX_BYTES, iseg = 1u << 16; /* index_segment_bytes */
	snprintf(path, cap, "%s/%s/%s/index/%020" PRIu64, c->dir, gn, id, roff - roff % iseg);
	return (off_t)(roff % iseg);
}

/* Flips the first body byte of entry `index` in member k of g's data
 * segment (found through its index record), under the open store: bit rot. */
static void damage_entry(struct cluster *c, uint32_t k, uint32_t g, uint64_t index, char *seg,
			 size_t cap, uint64_t *seg_off)
{
	char gn[16], id[16], path[512];
	group_name(g, gn);
	member_name(k, id);
	off_t rat = record_at(c, k, g, index, path, sizeof(path));
	int fd = open(path, O_RDONLY);
	tt_assert(fd >= 0, "%s", path);
	uint8_t rec[STO_IDX_BYTES];
	tt_assert(pread(fd, rec, sizeof(rec), rat) == (ssize_t)sizeof(rec));
	close(fd);
	struct sto_idx r;
	tt_assert(sto_idx_decode(rec, index, &r), "index record of %" PRIu64, index);
	tt_assert(r.body_bytes > 0);
	uint64_t segsz = 1u << 20; /* segment_bytes */
	snprintf(seg, cap, "%s/%s/%s/data/%020" PRIu64, c->dir, gn, id, r.pos - r.pos % segsz);
	*seg_off = r.pos % segsz;
	fd = open(seg, O_RDWR);
	tt_assert(fd >= 0, "%s", seg);
	uint8_t b;
	off_t at = (off_t)(*seg_off + STO_HDR_BYTES);
	tt_assert(pread(fd, &b, 1, at) == 1);
	b ^= 0x10;
	tt_assert(pwrite(fd, &b, 1, at) == 1);
	close(fd);
}

/* The leader of group g, once there is one (bounded); -1 if none in time. */
static int wait_leader(struct cluster *c, uint32_t g, unsigned timeout_ms)
{
	int l = leader_of(c, g);
	for (uint64_t end = dl_now_ns() + timeout_ms * 1000000ull; l < 0 && dl_now_ns() < end;) {
		sleep_ms(20);
		l = leader_of(c, g);
	}
	return l;
}

/* Node k's member of group g has repaired `want` entries in place (its
 * published status can lag a damaged read by a publication; bounded: 20 s). */
static bool wait_in_place(struct cluster *c, uint32_t k, uint32_t g, uint64_t want)
{
	struct rt_member_status st;
	for (uint64_t end = dl_now_ns() + 20000000000ull; dl_now_ns() < end; sleep_ms(20))
		if (member(c, k, g, &st) && st.repaired_in_place >= want)
			return true;
	return false;
}

/* Flips a bit of the index record of entry `index` on node k (group g):
 * the entry cannot be found, so it cannot be repaired in place. */
static void damage_record(struct cluster *c, uint32_t k, uint32_t g, uint64_t index)
{
	char path[512];
	off_t at = record_at(c, k, g, index, path, sizeof(path)) + 2;
	int fd = open(path, O_RDWR);
	tt_assert(fd >= 0, "%s", path);
	uint8_t b;
	tt_assert(pread(fd, &b, 1, at) == 1);
	b ^= 0x04;
	tt_assert(pwrite(fd, &b, 1, at) == 1);
	close(fd);
}

/* Node k's member of group g runs again, as a voter, past the damage
 * it had, and holds at least up to `last` (bounded: 20 s). */
static bool wait_repaired(struct cluster *c, uint32_t k, uint32_t g, uint64_t last)
{
	struct rt_member_status st;
	for (uint64_t end = dl_now_ns() + 20000000000ull; dl_now_ns() < end; sleep_ms(50))
		if (member(c, k, g, &st) && !st.failed && st.voter && st.damaged_index == 0 &&
		    st.last_index >= last)
			return true;
	return false;
}

/* Issue 12, finding 3: damage in the leader's store, on an entry a follower
 * still needs. The follower must not stall silently: the leader logs and
 * counts the damaged read and the send it could not make. Where the entry
 * can be found (its index record is sound) the leader repairs it in place
 * with a peer's copy, keeping leadership and its incarnation; where it
 * cannot (the record is damaged), it hands leadership to a follower that
 * holds the entry and, once it follows, is repaired by a cut under a new
 * incarnation. Either way the lagging follower catches up, and a get of a
 * damaged entry is answered with the file, offset and index. */
static void a_damaged_entry_on_the_leader_moves_leadership_and_the_leader_repairs_itself(void)
{
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start(&c);
	tt_assert(wait_leaders(&c, true, 10000));
	const uint32_t g = 1, leader = 1, behind = 2; /* g1 prefers node 1 */
	uint64_t first = append_to_group(&c, g, 10, "a");
	tt_assert(wait_commit(&c, g, first, 5000));
	rt_node_stop(c.node[behind]);
	c.node[behind] = NULL;
	uint64_t last = append_to_group(&c, g, 20, "b");
	tt_assert(wait_commit(&c, g, last, 5000));
	tt_assert(leader_of(&c, g) == (int)leader);
	uint64_t bad = first + 1; /* the first entry node 2 lacks */
	char seg[512];
	uint64_t seg_off;
	damage_record(&c, leader, g, bad);
	struct rt_member_status st;
	tt_assert(member(&c, leader, g, &st));
	uint64_t inc = st.incarnation;
	/* Node 2 comes back with its copy of g1 gone: frames the leader built
	 * for it before the damage (still in nng's send buffer) cannot help
	 * it, and the leader repairs it from the start, so it must read the
	 * damaged entry to send it. */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s/g1/n%u", c.dir, behind);
	tt_assert(system(cmd) == 0);
	start_node(&c, behind);
	tt_assert(wait_commit(&c, g, last, 20000), "node %u did not catch up past the damage",
		  behind);
	tt_assert(member(&c, leader, g, &st));
	fprintf(stderr,
		"damage: send failures %" PRIu64 ", hand-offs %" PRIu64 ", leader now %s\n",
		st.send_failures, st.damage_handoffs, st.leader);
	tt_assert(st.send_failures > 0);
	tt_assert(st.damage_handoffs > 0);
	/* The old leader, now a follower, is repaired by a cut: a new
	 * incarnation, a voter again once caught up. */
	char body[64];
	tt_assert(wait_repaired(&c, leader, g, last), "the damaged member was not repaired within 20 s");
	tt_assert(member(&c, leader, g, &st));
	tt_assert(st.repaired_in_place == 0 && st.incarnation != inc,
		  "repaired in place %" PRIu64 ", incarnation %" PRIu64 " (was %" PRIu64 ")",
		  st.repaired_in_place, st.incarnation, inc);
	for (uint32_t k = 0; k < 3; k++) {
		get_entry(&c, k, g, bad, body, sizeof(body));
		tt_assert(strcmp(body, "g1-b-0") == 0, "node %u holds %s at %" PRIu64, k, body, bad);
	}
	/* A body flipped on the leader now: a get finds it, and the leader
	 * repairs it in place without handing off (it may still lose
	 * leadership to the preferred leader, node 1, now a voter again). */
	int now_leader = wait_leader(&c, g, 10000);
	tt_assert(now_leader >= 0, "no leader of g1 within 10 s");
	uint32_t nl = (uint32_t)now_leader;
	tt_assert(member(&c, nl, g, &st));
	uint64_t handoffs = st.damage_handoffs;
	inc = st.incarnation;
	uint64_t bad3 = first + 5;
	damage_entry(&c, nl, g, bad3, seg, sizeof(seg), &seg_off);
	char msg[512], want[700];
	tt_assert(get_error(&c, nl, g, bad3, msg, sizeof(msg)) == DL_ECORRUPT, "%s", msg);
	tt_assert(wait_in_place(&c, nl, g, 1), "the leader did not repair in place within 20 s");
	tt_assert(wait_repaired(&c, nl, g, last), "the leader was not repaired within 20 s");
	tt_assert(member(&c, nl, g, &st));
	tt_assert(st.repaired_in_place == 1 && st.incarnation == inc && st.damage_handoffs == handoffs,
		  "in place %" PRIu64 ", hand-offs %" PRIu64, st.repaired_in_place, st.damage_handoffs);
	get_entry(&c, nl, g, bad3, body, sizeof(body));
	tt_assert(strcmp(body, "g1-b-4") == 0, "node %u holds %s at %" PRIu64, nl, body, bad3);
	/* A follower's damaged entry: a get is answered with file, offset and
	 * index, and the follower repairs it from a peer. */
	tt_assert(wait_repaired(&c, behind, g, last));
	tt_assert(member(&c, behind, g, &st));
	inc = st.incarnation;
	uint64_t bad2 = first + 3;
	damage_entry(&c, behind, g, bad2, seg, sizeof(seg), &seg_off);
	tt_assert(get_error(&c, behind, g, bad2, msg, sizeof(msg)) == DL_ECORRUPT, "%s", msg);
	snprintf(want, sizeof(want), "%s offset %" PRIu64 ": entry %" PRIu64 ": body checksum mismatch",
		 seg, seg_off, bad2);
	tt_assert(strstr(msg, want) != NULL, "got '%s', want '%s'", msg, want);
	tt_assert(wait_in_place(&c, behind, g, 1),
		  "the damaged follower did not repair in place within 20 s");
	tt_assert(wait_repaired(&c, behind, g, last),
		  "the damaged follower was not repaired within 20 s");
	tt_assert(member(&c, behind, g, &st));
	tt_assert(st.repaired_in_place == 1 && st.incarnation == inc);
	get_entry(&c, behind, g, bad2, body, sizeof(body));
	tt_assert(strcmp(body, "g1-b-2") == 0, "node %u holds %s at %" PRIu64, behind, body, bad2);
	cluster_stop(&c);
}

/* Damage on two members of one group at once, each at another entry:
 * every entry still has a good copy on a majority, and nothing may be
 * lost. With the leader's node stopped, the two followers repair each
 * other's damage in place, stay voters, elect a leader between them and
 * serve every entry. (A repair by cutting the log would leave two members
 * that are no longer voters, and no majority without the stopped node.) */
static void damage_on_two_followers_is_repaired_from_each_other(void)
{
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start(&c);
	tt_assert(wait_leaders(&c, true, 10000));
	const uint32_t g = 1, leader = 1, fa = 0, fb = 2; /* g1 prefers node 1 */
	uint64_t first = append_to_group(&c, g, 20, "c");
	tt_assert(wait_commit(&c, g, first, 5000));
	tt_assert(leader_of(&c, g) == (int)leader);
	uint64_t ia = first - 5, ib = first - 12;
	char seg[512], msg[512];
	uint64_t seg_off;
	damage_entry(&c, fa, g, ia, seg, sizeof(seg), &seg_off);
	damage_entry(&c, fb, g, ib, seg, sizeof(seg), &seg_off);
	rt_node_stop(c.node[leader]);
	c.node[leader] = NULL;
	/* The followers find their damage by reading it. */
	tt_assert(get_error(&c, fa, g, ia, msg, sizeof(msg)) == DL_ECORRUPT, "%s", msg);
	tt_assert(get_error(&c, fb, g, ib, msg, sizeof(msg)) == DL_ECORRUPT, "%s", msg);
	tt_assert(wait_in_place(&c, fa, g, 1) && wait_in_place(&c, fb, g, 1),
		  "the followers did not repair in place within 20 s");
	tt_assert(wait_repaired(&c, fa, g, first), "node %u was not repaired within 20 s", fa);
	tt_assert(wait_repaired(&c, fb, g, first), "node %u was not repaired within 20 s", fb);
	int l = wait_leader(&c, g, 10000);
	tt_assert(l == (int)fa || l == (int)fb, "no leader between the two followers (%d)", l);
	uint64_t more = append_to_group(&c, g, 3, "d");
	tt_assert(wait_commit(&c, g, more, 5000));
	char body[64], want[32];
	for (uint32_t k = 0; k < 3; k += 2)
		for (uint64_t i = first - 19; i <= first; i++) {
			get_entry(&c, k, g, i, body, sizeof(body));
			snprintf(want, sizeof(want), "g1-c-%" PRIu64, i - (first - 19));
			tt_assert(strcmp(body, want) == 0, "node %u holds %s at %" PRIu64 ", want %s", k,
				  body, i, want);
		}
	cluster_stop(&c);
}

/* Forged entries for the forged append below, read by the encoder. */
static int forged_read(void *ctx, uint64_t index, struct raft_entry *out)
{
	const uint64_t *first = ctx;
	static char body[3][16];
	uint64_t k = index - *first;
	if (k >= 3)
		return DL_ERANGE;
	snprintf(body[k], sizeof(body[k]), "FORGED-%" PRIu64, k);
	*out = (struct raft_entry){.term = first[1], .data = body[k], .len = (uint32_t)strlen(body[k])};
	return 0;
}

/* Sends one Raft message in a frame of its own on cl, as `sender` (the
 * connection stays open: closing at once may drop what is queued). */
static void send_forged(struct tclient *cl, const char *group, const char *target,
			const char *sender, const struct raft_message *m, uint64_t *read_ctx)
{
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct tp_addr ad = {.group = group, .target = target, .sender = sender, .request_id = 0};
	tt_assert(tp_fb_add_raft(&fb, &ad, m, forged_read, read_ctx) == 0);
	tt_assert(tc_send(cl, &fb) == 0);
	tp_fb_free(&fb);
}

/* Issue 13, finding 1: an append of term + 1 with FORGED-0..2 (forged_read)
 * after the last entry, and a commit index over them. */
static struct raft_message forged_append(uint64_t last, uint64_t term, uint64_t incarnation)
{
	struct raft_message ap = {.type = RAFT_MSG_APPEND, .term = term + 1, .voter = true,
				  .incarnation = incarnation};
	ap.append.prev_index = last;
	ap.append.prev_term = term;
	ap.append.commit = last + 3;
	ap.append.n_entries = 3;
	return ap;
}

/* After forged frames to group g whose log ended at `last` in `term`, led
 * by node `leader`: five appends commit right after `last` ("g1-b-0" ...)
 * on every member, no term or leader moved, and with `before` (NULL: not
 * checked) no core counted a refused message since then (the router took
 * them all). */
static void expect_nothing_moved(struct cluster *c, uint32_t g, uint64_t last, uint64_t term,
				 uint32_t leader, const struct rt_member_status before[3])
{
	uint64_t more = append_to_group(c, g, 5, "b");
	tt_assert(wait_commit(c, g, more, 5000));
	tt_assert(more == last + 5, "the group's log grew by %" PRIu64 ", not 5", more - last);
	for (uint32_t k = 0; k < 3; k++) {
		struct rt_member_status st;
		tt_assert(member(c, k, g, &st));
		tt_assert(st.term == term, "node %u: term %" PRIu64 ", was %" PRIu64, k, st.term, term);
		tt_assert(before == NULL || st.refused_msgs == before[k].refused_msgs,
			  "node %u: the core saw a forged message", k);
		char body[64];
		get_entry(c, k, g, last + 1, body, sizeof(body));
		tt_assert(strcmp(body, "g1-b-0") == 0, "node %u holds %s at %" PRIu64, k, body, last + 1);
	}
	tt_assert(leader_of(c, g) == (int)leader);
}

/* Issue 13, both findings, without TLS. (1) An append from a sender that is
 * not a member of the group (or that claims to be the receiver itself) is
 * refused by the router and counted: the forged entries never appear. (2) A
 * vote request of term 2^64-1 (and one of our term + 2^32 + 1) from a
 * member's id, with its incarnation, is refused by the core and counted:
 * no term moves, and the group goes on committing. */
static void forged_frames_change_no_data_and_no_liveness(void)
{
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start(&c);
	tt_assert(wait_leaders(&c, true, 10000));
	const uint32_t g = 1, leader = 1; /* g1 prefers node 1 */
	uint64_t last = append_to_group(&c, g, 10, "a");
	tt_assert(wait_commit(&c, g, last, 5000));
	struct rt_member_status st0, st1, st2;
	tt_assert(member(&c, 0, g, &st0) && member(&c, 1, g, &st1) && member(&c, 2, g, &st2));
	uint64_t term = st1.term;
	struct rt_node_stats ns;
	rt_node_stats(c.node[0], &ns);
	uint64_t not_member = ns.not_member;
	/* (1) FORGED-0..2 after the last entry, committed, from "a9" and "n0". */
	uint64_t ctx[2] = {last + 1, term + 1};
	struct raft_message ap = forged_append(last, term, st1.incarnation);
	struct tclient to0, to1;
	tt_assert(tc_open(&to0, c.addr[0]) == 0 && tc_open(&to1, c.addr[1]) == 0);
	send_forged(&to0, "g1", "n0", "a9", &ap, ctx);
	send_forged(&to0, "g1", "n0", "n0", &ap, ctx);
	for (uint64_t end = dl_now_ns() + 5000000000ull; dl_now_ns() < end; sleep_ms(10)) {
		rt_node_stats(c.node[0], &ns);
		if (ns.not_member >= not_member + 2)
			break;
	}
	tt_assert(ns.not_member == not_member + 2, "not-member messages %" PRIu64 " (was %" PRIu64 ")",
		  ns.not_member, not_member);
	/* (2) Absurd terms from n2's id to n1, which leads. */
	uint64_t refused = st1.refused_msgs;
	const uint64_t absurd[] = {UINT64_MAX, term + RAFT_MAX_TERM_JUMP + 1};
	for (int i = 0; i < 2; i++) {
		struct raft_message v = {.type = RAFT_MSG_VOTE, .term = absurd[i], .voter = true,
					 .incarnation = st2.incarnation};
		v.vote.last_index = UINT64_MAX / 2;
		v.vote.last_term = absurd[i];
		send_forged(&to1, "g1", "n1", "n2", &v, NULL);
	}
	for (uint64_t end = dl_now_ns() + 5000000000ull; dl_now_ns() < end; sleep_ms(10))
		if (member(&c, 1, g, &st1) && st1.refused_msgs >= refused + 2)
			break;
	tt_assert(st1.refused_msgs == refused + 2, "refused %" PRIu64 " (was %" PRIu64 ")",
		  st1.refused_msgs, refused);
	/* Nothing moved: no forged entry, no term, and the group commits. */
	expect_nothing_moved(&c, g, last, term, leader, NULL);
	tc_close(&to0);
	tc_close(&to1);
	cluster_stop(&c);
}

/* ---- TLS ------------------------------------------------------------------------------ */

/* stderr (the log) goes to a file between log_capture() and log_release(). */
static char log_path[64];
static int log_saved_fd = -1;

static void log_capture(void)
{
	fflush(stderr);
	snprintf(log_path, sizeof(log_path), "/tmp/dl-rt-log-XXXXXX");
	int fd = mkstemp(log_path);
	tt_assert(fd >= 0);
	log_saved_fd = dup(STDERR_FILENO);
	tt_assert(log_saved_fd >= 0 && dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
}

/* The first `cap` - 1 bytes of the file at `path`, NUL-terminated;
 * malloc'd. */
static char *read_text(const char *path, size_t cap)
{
	FILE *f = fopen(path, "r");
	tt_assert(f != NULL, "%s", path);
	char *buf = calloc(1, cap);
	tt_assert(buf != NULL);
	size_t n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* What was logged since log_capture(); malloc'd. */
static char *log_text(void)
{
	return read_text(log_path, 1 << 20);
}

/* Ends the capture, copies what was logged to the real stderr, and returns
 * it (malloc'd). */
static char *log_release(void)
{
	fflush(stderr);
	char *text = log_text();
	dup2(log_saved_fd, STDERR_FILENO);
	close(log_saved_fd);
	log_saved_fd = -1;
	unlink(log_path);
	fputs(text, stderr);
	return text;
}

/* Waits (bounded) until the captured log holds `needle`. */
static bool log_wait(const char *needle, unsigned timeout_ms)
{
	for (uint64_t end = dl_now_ns() + timeout_ms * 1000000ull;; sleep_ms(10)) {
		char *text = log_text();
		bool found = strstr(text, needle) != NULL;
		free(text);
		if (found)
			return true;
		if (dl_now_ns() >= end)
			return false;
	}
}

static uint64_t tls_failures(enum tp_tls_fail kind)
{
	struct tp_tls_stats st;
	tp_tls_stats(&st);
	return st.failures[kind];
}

/* Appends and reads work over mutual TLS, with a client certificate, both
 * through the test client and through the C client (dl_client with TLS
 * files); a plaintext client cannot connect, and the node says why. */
static void tls_cluster_elects_replicates_and_reads(void)
{
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start_with(&c, true, -1);
	tt_assert(wait_leaders(&c, true, 10000), "no preferred leader in every group over TLS");
	uint64_t last[GROUPS];
	for (uint32_t g = 0; g < GROUPS; g++)
		last[g] = append_to_group(&c, g, 50, "t");
	for (uint32_t g = 0; g < GROUPS; g++)
		tt_assert(wait_commit(&c, g, last[g], 5000), "g%u not committed everywhere", g);
	uint32_t follower = (uint32_t)(leader_of(&c, 2) + 1) % NODES;
	char body[64];
	get_entry(&c, follower, 2, last[2], body, sizeof(body));
	tt_assert(strcmp(body, "g2-t-49") == 0, "got %s", body);

	char peers[256], crt[160], key[160], ca[160];
	snprintf(peers, sizeof(peers), "n0-%s;n1-%s;n2-%s", c.addr[0], c.addr[1], c.addr[2]);
	snprintf(crt, sizeof(crt), "%s/client.crt", c.certs);
	snprintf(key, sizeof(key), "%s/client.key", c.certs);
	snprintf(ca, sizeof(ca), "%s/ca.crt", c.certs);
	struct dl_client_opts o = {.tls_cert_file = crt, .tls_key_file = key, .tls_ca_file = ca};
	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_open(peers, "g0", &o, &cl, &err) == 0, "%s", err.msg);
	uint64_t index = 0;
	tt_assert(dl_client_append(cl, "over-tls", 8, &index, NULL, &err) == 0, "%s", err.msg);
	tt_assert(index == last[0] + 1, "index %" PRIu64 ", want %" PRIu64, index, last[0] + 1);
	dl_client_close(cl);
	o.tls_ca_file = NULL;
	tt_assert(dl_client_open(peers, "g0", &o, &cl, &err) == DL_ECONFIG);
	tt_assert(strstr(err.msg, "the CA file is missing") != NULL, "%s", err.msg);
	o.tls_ca_file = "/nonexistent/ca.crt";
	tt_assert(dl_client_open(peers, "g0", &o, &cl, &err) == DL_ECONFIG);
	tt_assert(strstr(err.msg, "CA file '/nonexistent/ca.crt': cannot open") != NULL, "%s",
		  err.msg);

	uint64_t not_tls = tls_failures(TP_TLS_FAIL_NOT_TLS);
	log_capture();
	struct tclient plain;
	bool refused = tc_open_tls(&plain, c.addr[0], NULL, NULL) != 0;
	bool logged = log_wait("failed (not_tls): the peer does not speak TLS", 5000);
	free(log_release());
	tt_assert(refused, "a plaintext client connected to a TLS node");
	tt_assert(logged, "no log line for the plaintext client");
	tt_assert(tls_failures(TP_TLS_FAIL_NOT_TLS) > not_tls);
	cluster_stop(&c);
}

static uint64_t node_stat_not_node(struct cluster *c, uint32_t k)
{
	struct rt_node_stats ns;
	rt_node_stats(c->node[k], &ns);
	return ns.not_node;
}

/* Issue 13's two forged frames, with TLS on, sent over a connection with a
 * client certificate (which may append and read): (1) an append of a new
 * term in the leader's name, with entries past the end of the log and a
 * commit index over them; (2) a vote request of term 2^64-1 in a member's
 * name. Both are refused by the router before any member sees them (the
 * cores' refused_msgs do not move), counted in not_node and logged; no
 * entry, term or leader changes, and the group goes on committing. */
static void tls_client_certificates_cannot_speak_raft(void)
{
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start_with(&c, true, -1);
	tt_assert(wait_leaders(&c, true, 10000));
	const uint32_t g = 1, leader = 1; /* g1 prefers node 1 */
	uint64_t last = append_to_group(&c, g, 10, "a");
	tt_assert(wait_commit(&c, g, last, 5000));
	struct rt_member_status st0, st1, st2;
	tt_assert(member(&c, 0, g, &st0) && member(&c, 1, g, &st1) && member(&c, 2, g, &st2));
	uint64_t term = st1.term, nn0 = node_stat_not_node(&c, 0), nn1 = node_stat_not_node(&c, 1);

	uint64_t ctx[2] = {last + 1, term + 1};
	struct raft_message ap = forged_append(last, term, st1.incarnation);
	struct raft_message v = {.type = RAFT_MSG_VOTE, .term = UINT64_MAX, .voter = true,
				 .incarnation = st2.incarnation};
	v.vote.last_index = UINT64_MAX / 2;
	v.vote.last_term = UINT64_MAX;
	struct tclient to0, to1; /* client certificates (cluster_start_with) */
	tt_assert(tc_open(&to0, c.addr[0]) == 0 && tc_open(&to1, c.addr[1]) == 0);
	log_capture();
	send_forged(&to0, "g1", "n0", "n1", &ap, ctx);
	send_forged(&to1, "g1", "n1", "n2", &v, NULL);
	bool counted = false;
	for (uint64_t end = dl_now_ns() + 5000000000ull; !counted && dl_now_ns() < end; sleep_ms(10))
		counted = node_stat_not_node(&c, 0) == nn0 + 1 && node_stat_not_node(&c, 1) == nn1 + 1;
	bool logged = log_wait("refused peer message 'append' for g1/n0 sent as 'n1': its "
			       "connection's certificate is a client certificate",
			       5000) &&
		      log_wait("refused peer message 'vote' for g1/n1 sent as 'n2'", 5000);
	free(log_release());
	tt_assert(counted, "not_node: node 0 %" PRIu64 " (was %" PRIu64 "), node 1 %" PRIu64
			   " (was %" PRIu64 ")",
		  node_stat_not_node(&c, 0), nn0, node_stat_not_node(&c, 1), nn1);
	tt_assert(logged, "no log line for the refused messages");

	/* Nothing moved, and the cores never saw them. */
	const struct rt_member_status before[3] = {st0, st1, st2};
	expect_nothing_moved(&c, g, last, term, leader, before);
	tc_close(&to0);
	tc_close(&to1);
	cluster_stop(&c);
}

static char *read_pem(const char *path)
{
	return read_text(path, 1 << 16);
}

/* What any TLS client could do: a blocking dial to addr with these files
 * (c->certs/NAME.crt and .key, NULL: no certificate) and this CA, without
 * tp_tls_load()'s checks. Returns nng's result (0: connected). */
static int raw_tls_dial(const struct cluster *c, const char *addr, const char *name,
			const char *ca_dir)
{
	char path[200];
	nng_tls_config *cfg;
	tt_assert(nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT) == 0);
	tt_assert(nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED) == 0);
	snprintf(path, sizeof(path), "%s/%s%sca.crt", c->certs, ca_dir, ca_dir[0] ? "/" : "");
	char *ca = read_pem(path);
	tt_assert(nng_tls_config_ca_chain(cfg, ca, NULL) == 0);
	free(ca);
	if (name != NULL) {
		snprintf(path, sizeof(path), "%s/%s.crt", c->certs, name);
		char *crt = read_pem(path);
		snprintf(path, sizeof(path), "%s/%s.key", c->certs, name);
		char *key = read_pem(path);
		tt_assert(nng_tls_config_own_cert(cfg, crt, key, NULL) == 0);
		free(crt);
		free(key);
	}
	tt_assert(nng_tls_config_server_name(cfg, "127.0.0.1") == 0);
	char url[64];
	snprintf(url, sizeof(url), "tls+tcp://%s", addr);
	nng_socket s;
	nng_dialer d;
	tt_assert(nng_req0_open_raw(&s) == 0 && nng_dialer_create(&d, s, url) == 0);
	tt_assert(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg) == 0);
	nng_tls_config_free(cfg);
	int rv = nng_dialer_start(d, 0);
	nng_close(s); /* nothing was received on it (see close_pipe_first in tclient.c) */
	return rv;
}

/* One refused handshake: `dial` fails, the count of `kind` rises, and the
 * log says `why`. The engine logs one line a second per kind, so a dial
 * right after another failure of its kind is counted but not logged: the
 * dial is repeated (each must fail) until its line is written, for at most
 * 5 s. */
#define EXPECT_REFUSED(dial, kind, why)                                                        \
	do {                                                                                   \
		uint64_t before_ = tls_failures(kind);                                          \
		log_capture();                                                                 \
		int rv_ = 0;                                                                   \
		bool logged_ = false;                                                          \
		for (uint64_t end_ = dl_now_ns() + 5000000000ull;                              \
		     !logged_ && dl_now_ns() < end_;) {                                        \
			int r_ = (dial);                                                       \
			rv_ = rv_ == 0 || r_ == 0 ? r_ : rv_;                                  \
			if (r_ == 0)                                                           \
				break;                                                         \
			logged_ = log_wait(why, 100);                                          \
		}                                                                              \
		bool counted_ = tls_failures(kind) > before_;                                  \
		free(log_release());                                                           \
		tt_assert(rv_ != 0, "%s: the dial succeeded", #dial);                          \
		tt_assert(logged_, "%s: no log line '%s'", #dial, why);                        \
		tt_assert(counted_, "%s: %s not counted", #dial, tp_tls_fail_name(kind));      \
	} while (0)

/* Issue 13's handshake failures, each with its log line and counter: a
 * client certificate of another CA, an expired one (of the right CA), no
 * certificate, a client that does not trust the cluster's CA (the node sees
 * the refusal), a node certificate that names another host, and a server
 * whose certificate is not a node's. None of them gets a connection with a
 * role; no term moves and the groups go on committing. */
static void tls_handshake_failures_are_logged_and_counted(void)
{
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start_with(&c, true, -1);
	tt_assert(wait_leaders(&c, true, 10000));
	struct rt_member_status before;
	tt_assert(member(&c, 1, 1, &before));
	const char *a0 = c.addr[0];
	EXPECT_REFUSED(raw_tls_dial(&c, a0, "other/client", ""), TP_TLS_FAIL_VERIFY,
		       "TLS handshake of an inbound connection failed (verify): the client's "
		       "certificate did not verify: The certificate is not correctly signed by "
		       "the trusted CA");
	EXPECT_REFUSED(raw_tls_dial(&c, a0, "expired", ""), TP_TLS_FAIL_VERIFY,
		       "TLS handshake of an inbound connection failed (verify): the client's "
		       "certificate did not verify: The certificate validity has expired");
	EXPECT_REFUSED(raw_tls_dial(&c, a0, NULL, ""), TP_TLS_FAIL_NO_CERT,
		       "failed (no_cert): the client sent no certificate");
	EXPECT_REFUSED(raw_tls_dial(&c, a0, "client", "other"), TP_TLS_FAIL_REFUSED,
		       "TLS handshake of an inbound connection failed (refused_by_peer): the "
		       "peer refused the handshake with alert 48 (unknown CA)");
	/* The client's side: our client refuses a node certificate for another
	 * host, and a server with a client certificate. */
	struct rt_node_config nc;
	rt_node_config_defaults(&nc);
	snprintf(nc.listen_addr, sizeof(nc.listen_addr), "127.0.0.1:%u", tt_port());
	struct tp_tls *odd = load_tls(&c, "localhost", "", true);
	nc.tls = odd;
	struct rt_node *n = NULL;
	struct dl_errctx err = {{0}};
	tt_assert(rt_node_start(&nc, &n, &err) == 0, "%s", err.msg);
	struct tclient cl;
	EXPECT_REFUSED(tc_open_tls(&cl, nc.listen_addr, c.client_tls, NULL), TP_TLS_FAIL_VERIFY,
		       "TLS handshake with 127.0.0.1 failed (verify): the server's certificate "
		       "did not verify: The certificate Common Name (CN) does not match with the "
		       "expected CN");
	rt_node_stop(n);
	tp_tls_free(odd);
	snprintf(nc.listen_addr, sizeof(nc.listen_addr), "127.0.0.1:%u", tt_port());
	odd = load_tls(&c, "nonnode", "", false);
	nc.tls = odd;
	tt_assert(rt_node_start(&nc, &n, &err) == 0, "%s", err.msg);
	EXPECT_REFUSED(tc_open_tls(&cl, nc.listen_addr, c.client_tls, NULL), TP_TLS_FAIL_NOT_NODE,
		       "TLS handshake with 127.0.0.1 failed (not_node): the server's certificate "
		       "is valid but not a node certificate");
	rt_node_stop(n);
	tp_tls_free(odd);

	for (uint32_t k = 0; k < NODES; k++) {
		struct rt_node_stats ns;
		rt_node_stats(c.node[k], &ns);
		tt_assert(ns.tls_conns_client == 0, "node %u: a refused client is connected", k);
	}
	uint64_t last = append_to_group(&c, 1, 3, "after");
	tt_assert(wait_commit(&c, 1, last, 5000));
	struct rt_member_status after;
	tt_assert(member(&c, 1, 1, &after));
	tt_assert(after.term == before.term, "term %" PRIu64 " -> %" PRIu64, before.term,
		  after.term);
	cluster_stop(&c);
}

/* The node of `g` that nodes 0 and 1 both follow and that leads; -1 while
 * they do not agree (node 2 is cut off). */
static int leader_of_01(struct cluster *c, uint32_t g)
{
	struct rt_member_status s0, s1;
	if (!member(c, 0, g, &s0) || !member(c, 1, g, &s1) || s0.leader[0] != 'n' ||
	    strcmp(s0.leader, s1.leader) != 0)
		return -1;
	int l = atoi(s0.leader + 1);
	struct rt_member_status sl;
	return l <= 1 && member(c, (uint32_t)l, g, &sl) && sl.role == RAFT_LEADER ? l : -1;
}

/* A peer without TLS dialing TLS nodes: node 2, restarted without TLS
 * (its members were voters with data), fails every handshake (logged and
 * counted as not_tls on both sides), gets nothing more, and nodes 0 and 1
 * go on electing and committing on their own. (A group whose stores are all
 * new needs every member to elect at all: "A member that lost its disk".) */
static void tls_plaintext_peer_cannot_join(void)
{
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start_with(&c, true, -1);
	tt_assert(wait_leaders(&c, true, 10000));
	uint64_t held[GROUPS];
	for (uint32_t g = 0; g < GROUPS; g++) {
		held[g] = append_to_group(&c, g, 3, "tls");
		tt_assert(wait_commit(&c, g, held[g], 5000));
	}
	rt_node_stop(c.node[2]);
	c.node[2] = NULL;
	c.plain_node = 2;
	uint64_t not_tls = tls_failures(TP_TLS_FAIL_NOT_TLS);
	log_capture();
	start_node(&c, 2);
	bool logged = log_wait("TLS handshake of an inbound connection failed (not_tls): the peer "
			       "does not speak TLS (a plaintext peer on a TLS port?)",
			       10000);
	free(log_release());
	tt_assert(logged, "no log line for the plaintext peer");
	tt_assert(tls_failures(TP_TLS_FAIL_NOT_TLS) > not_tls);
	/* Five appends a group through nodes 0 and 1. An append that finds
	 * no connection or no leader is tried again, at the leader of the
	 * moment, for up to 20 s (the plaintext peer's failed dials once ended
	 * nng 1.5.2's accept loop on a TLS node for seconds; the listener's
	 * accept loop is ours now, which no connection's error ends). */
	uint64_t last[GROUPS];
	for (uint32_t g = 0; g < GROUPS; g++) {
		char gn[16], id[16];
		group_name(g, gn);
		int done = 0, rc = -1, l = -1;
		for (uint64_t end = dl_now_ns() + 20000000000ull; done < 5 && dl_now_ns() < end;) {
			l = leader_of_01(&c, g);
			if (l < 0) {
				sleep_ms(10);
				continue;
			}
			member_name((uint32_t)l, id);
			rc = tc_append(c.addr[l], gn, id, "two", 3, &last[g], NULL, 2000);
			done += rc == 0;
		}
		tt_assert(done == 5, "g%u: %d of 5 appends through nodes 0 and 1 in 20 s (last: node %d, %s)",
			  g, done, l, rc < 0 ? "no leader" : dl_strerror(rc));
	}
	for (uint32_t g = 0; g < GROUPS; g++) {
		struct rt_member_status s0, s1, s2;
		for (uint64_t end = dl_now_ns() + 5000000000ull; dl_now_ns() < end; sleep_ms(10))
			if (member(&c, 0, g, &s0) && member(&c, 1, g, &s1) &&
			    s0.commit_index >= last[g] && s1.commit_index >= last[g])
				break;
		tt_assert(s0.commit_index >= last[g] && s1.commit_index >= last[g]);
		tt_assert(member(&c, 2, g, &s2));
		tt_assert(s2.last_index == held[g],
			  "g%u: the plaintext node got entries (last %" PRIu64 ", held %" PRIu64 ")",
			  g, s2.last_index, held[g]);
	}
	cluster_stop(&c);
}

/* A metadata request to node k over a fresh TLS connection; true when it is
 * answered within timeout_ms. */
static bool node_answers(struct cluster *c, uint32_t k, int timeout_ms)
{
	struct tclient cl;
	if (tc_open(&cl, c->addr[k]) != 0)
		return false;
	struct tp_fb fb;
	tp_fb_init(&fb, 1 << 20);
	struct tp_addr a = {.group = "", .target = "", .sender = "", .request_id = 11};
	struct tp_hdr h;
	bool ok = tp_fb_add_metadata(&fb, &a) == 0 && tc_call(&cl, &fb, 11, &h, timeout_ms) == 0 &&
		  h.type == TP_METADATA_RESP;
	tp_fb_free(&fb);
	tc_close(&cl);
	return ok;
}

/* nng 1.5.2's own listener could end its accept loop for good when a
 * connection closed during its handshake; the listener's accept loop is
 * ours now (transport/endpoint.c), which no connection's error ends.
 * Hundreds of connections dropped at every stage of the handshake later,
 * every node still answers a new client within a bounded time, and the
 * groups commit. And a connection that never starts its handshake (a TCP
 * connection that sends nothing) is closed after the hello timeout (5 s by
 * default) and counted, so it cannot hold a slot for good. */
static void tls_connections_dropped_mid_handshake_do_not_stop_the_listener(void)
{
	dl_log_set_level(DL_LOG_ERROR);
	struct cluster c;
	cluster_start_with(&c, true, -1);
	tt_assert(wait_leaders(&c, true, 10000));
	char url[64];
	for (int i = 0; i < 600; i++) {
		uint32_t k = (uint32_t)i % NODES;
		snprintf(url, sizeof(url), "tls+tcp://%s", c.addr[k]);
		nng_socket s;
		nng_dialer d;
		tt_assert(nng_req0_open_raw(&s) == 0 && nng_dialer_create(&d, s, url) == 0);
		tt_assert(tp_tls_setup_dialer(c.client_tls, d, c.addr[k]) == 0);
		tt_assert(nng_dialer_start(d, NNG_FLAG_NONBLOCK) == 0);
		usleep((useconds_t)(i % 13) * 150); /* every stage of the handshake */
		nng_close(s); /* no pipe is ever used: nothing received */
	}
	for (uint32_t k = 0; k < NODES; k++) {
		bool ok = false;
		for (uint64_t end = dl_now_ns() + 15000000000ull; !ok && dl_now_ns() < end;)
			ok = node_answers(&c, k, 1000);
		struct rt_node_stats ns;
		rt_node_stats(c.node[k], &ns);
		fprintf(stderr, "node %u: listener restarts %" PRIu64 ", dialer restarts %" PRIu64 "\n",
			k, ns.tls_listener_restarts, ns.tls_dialer_restarts);
		tt_assert(ok, "node %u takes no new connection", k);
	}
	for (uint32_t g = 0; g < GROUPS; g++) {
		uint64_t last = append_to_group(&c, g, 3, "after");
		tt_assert(wait_commit(&c, g, last, 10000));
	}
	struct rt_node_stats ns;
	rt_node_stats(c.node[0], &ns);
	uint64_t timeouts0 = ns.hello_timeouts;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	tt_assert(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	unsigned port = 0;
	tt_assert(sscanf(c.addr[0], "127.0.0.1:%u", &port) == 1);
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {.tv_sec = 20};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	uint64_t t0 = dl_now_ns();
	tt_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	char buf[64];
	ssize_t n = 0;
	for (int i = 0; i < 100 && (n = recv(fd, buf, sizeof(buf), 0)) > 0; i++)
		; /* a TLS server says nothing before the client's hello */
	uint64_t ms = (dl_now_ns() - t0) / 1000000u;
	close(fd);
	tt_assert(n == 0, "no close within 20 s (recv %zd)", n);
	tt_assert(ms >= 4500, "closed after %llu ms, before the hello timeout",
		  (unsigned long long)ms);
	/* nng's TLS layer may close the TCP connection before our receive
	 * callback, which counts it, has run: wait for the count. */
	uint64_t until = dl_now_ns() + 5000000000ull;
	do {
		rt_node_stats(c.node[0], &ns);
		if (ns.hello_timeouts != timeouts0)
			break;
		usleep(1000);
	} while (dl_now_ns() < until);
	tt_assert(ns.hello_timeouts == timeouts0 + 1, "hello timeouts %llu -> %llu",
		  (unsigned long long)timeouts0, (unsigned long long)ns.hello_timeouts);
	dl_log_set_level(DL_LOG_WARN);
	cluster_stop(&c);
}

/* Plaintext on an address other machines can reach: a warning at start. */
static void a_node_without_tls_on_a_public_address_warns(void)
{
	dl_log_set_level(DL_LOG_INFO);
	struct rt_node_config nc;
	rt_node_config_defaults(&nc);
	snprintf(nc.listen_addr, sizeof(nc.listen_addr), "0.0.0.0:%u", tt_port());
	struct rt_node *n = NULL;
	struct dl_errctx err = {{0}};
	log_capture();
	int rc = rt_node_start(&nc, &n, &err);
	char *text = log_release();
	tt_assert(rc == 0, "%s", err.msg);
	tt_assert(strstr(text, "WARN  listening on 0.0.0.0:") != NULL &&
			  strstr(text, "without TLS: anyone who can reach this address") != NULL,
		  "no warning");
	free(text);
	rt_node_stop(n);
	/* Loopback: no warning. */
	snprintf(nc.listen_addr, sizeof(nc.listen_addr), "127.0.0.1:%u", tt_port());
	log_capture();
	rc = rt_node_start(&nc, &n, &err);
	text = log_release();
	tt_assert(rc == 0, "%s", err.msg);
	tt_assert(strstr(text, "without TLS") == NULL, "a warning on loopback");
	free(text);
	rt_node_stop(n);
	dl_log_set_level(DL_LOG_WARN);
}

struct burst {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint32_t done, ok, busy, other;
};

static void burst_done(void *arg, const struct dl_client_result *r)
{
	struct burst *b = arg;
	pthread_mutex_lock(&b->mu);
	if (r->code == 0)
		b->ok++;
	else if (r->code == DL_EBUSY)
		b->busy++;
	else
		b->other++;
	b->done++;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

/* maxPendingBytes: a leader holds at most that many bytes of appends
 * waiting for commit and answers the rest DL_EBUSY at once. A burst of 32
 * appends of 16 KiB leaves in one frame, so they reach the leader in one
 * pass, long before any of them can commit: with a bound of 64 KiB the
 * first four are taken and most of the rest refused. */
static void pending_bytes_past_the_bound_are_answered_busy(void)
{
	enum { BURST = 32, BODY = 16 * 1024 };
	dl_log_set_level(DL_LOG_WARN);
	start_max_pending_bytes = 64 * 1024;
	struct cluster c;
	cluster_start(&c);
	start_max_pending_bytes = 0;
	tt_assert(wait_leaders(&c, true, 10000), "no preferred leader in every group");
	char peers[256];
	snprintf(peers, sizeof(peers), "n0-%s;n1-%s;n2-%s", c.addr[0], c.addr[1], c.addr[2]);
	struct dl_client_opts o = {.max_inflight = BURST};
	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_open(peers, "g0", &o, &cl, &err) == 0, "%s", err.msg);
	/* Connected and at the leader before the burst. */
	tt_assert(dl_client_append(cl, "first", 5, NULL, NULL, &err) == 0, "%s", err.msg);
	static char body[BODY];
	memset(body, 'b', sizeof(body));
	struct burst b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	struct dl_client_buf buf = {body, sizeof(body)};
	dl_client_cork(cl);
	for (uint32_t i = 0; i < BURST; i++)
		tt_assert(dl_client_append_async(cl, &buf, 1, burst_done, &b, &err) == 0, "%s",
			  err.msg);
	dl_client_uncork(cl);
	pthread_mutex_lock(&b.mu);
	for (uint32_t waits = 0; b.done < BURST && waits < 100; waits++) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&b.cv, &b.mu, &ts);
	}
	struct burst got = b;
	pthread_mutex_unlock(&b.mu);
	dl_client_close(cl);
	fprintf(stderr, "burst of %d x %d bytes, bound 64 KiB: %u taken, %u busy\n", BURST, BODY,
		got.ok, got.busy);
	tt_assert(got.done == BURST, "%u of %d answered", got.done, BURST);
	tt_assert(got.other == 0, "%u answers neither ok nor busy", got.other);
	tt_assert(got.ok >= 4, "only %u taken", got.ok);
	tt_assert(got.busy >= BURST / 2, "only %u busy", got.busy);
	/* The leader is not stuck: once they committed, appends are taken again. */
	tt_assert(append_to_group(&c, 0, 4, "after") > 0);
	cluster_stop(&c);
}

struct appended {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint32_t done, failed;
	uint64_t last;
	uint32_t last_i; /* the append that got index `last` */
};

struct append_slot {
	struct appended *b;
	uint32_t i;
};

static void appended_one(void *arg, const struct dl_client_result *r)
{
	const struct append_slot *s = arg;
	struct appended *b = s->b;
	pthread_mutex_lock(&b->mu);
	if (r->code != 0) {
		b->failed++;
	} else if (r->first_index > b->last) {
		b->last = r->first_index;
		b->last_i = s->i;
	}
	b->done++;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

struct got_entry {
	char body[64];
};

static int keep_entry(void *arg, uint64_t index, uint64_t term, const void *data, size_t len)
{
	(void)index;
	(void)term;
	struct got_entry *g = arg;
	size_t n = len < sizeof(g->body) - 1 ? len : sizeof(g->body) - 1;
	memcpy(g->body, data, n);
	g->body[n] = '\0';
	return 0;
}

/* Issue 16: right after 1,000 acknowledged appends, a read of the last one
 * from each follower returns it. The heartbeat is 2 s (the default) and the
 * reads wait at most 200 ms at the follower, so they cannot count on a
 * heartbeat (without notices this failed 9 times in 10): the
 * leader's commit notice (raft/raft.h, "Commit notices") tells the
 * followers within about a round trip. */
static void follower_reads_right_after_acknowledged_appends_return_the_entry(void)
{
	enum { N = 1000 };
	dl_log_set_level(DL_LOG_WARN);
	start_heartbeat_ms = 2000;
	start_election_ms = 2500;
	struct cluster c;
	cluster_start(&c);
	start_heartbeat_ms = start_election_ms = 0;
	tt_assert(wait_leaders(&c, false, 30000), "no leader in every group");
	char peers[256];
	snprintf(peers, sizeof(peers), "n0-%s;n1-%s;n2-%s", c.addr[0], c.addr[1], c.addr[2]);
	struct dl_client_opts o = {.max_inflight = 128, .get_wait_ms = 200, .retry_busy = true};
	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_open(peers, "g0", &o, &cl, &err) == 0, "%s", err.msg);
	struct appended b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	static struct append_slot slots[N];
	for (uint32_t i = 0; i < N; i++) {
		char body[32];
		int len = snprintf(body, sizeof(body), "g0-read-%u", i);
		struct dl_client_buf buf = {body, (size_t)len};
		slots[i] = (struct append_slot){&b, i};
		tt_assert(dl_client_append_async(cl, &buf, 1, appended_one, &slots[i], &err) == 0,
			  "%s", err.msg);
	}
	/* Up to 60 s for the answers (the bound is time: a wake per answer). */
	pthread_mutex_lock(&b.mu);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 60;
	while (b.done < N && pthread_cond_timedwait(&b.cv, &b.mu, &until) != ETIMEDOUT)
		;
	struct appended got = b;
	pthread_mutex_unlock(&b.mu);
	tt_assert(got.done == N && got.failed == 0, "%u of %d answered, %u failed", got.done, N,
		  got.failed);
	/* No sleep: read the last acknowledged entry from each follower. */
	int l = leader_of(&c, 0);
	tt_assert(l >= 0, "g0 lost its leader");
	for (uint32_t k = 0; k < NODES; k++) {
		if ((int)k == l)
			continue;
		char id[16];
		member_name(k, id);
		struct got_entry e = {{0}};
		uint64_t t0 = dl_now_ns();
		int rc = dl_client_get(cl, got.last, got.last, id, keep_entry, &e, &err);
		double ms = (double)(dl_now_ns() - t0) / 1e6;
		fprintf(stderr, "read of %llu from follower %s right after the appends: %.1f ms\n",
			(unsigned long long)got.last, id, ms);
		tt_assert(rc == 0, "follower %s: %s (%s)", id, dl_strerror(rc), err.msg);
		char want[32];
		snprintf(want, sizeof(want), "g0-read-%u", got.last_i);
		tt_assert(strcmp(e.body, want) == 0, "follower %s gave %s, not %s", id, e.body, want);
	}
	dl_client_close(cl);
	cluster_stop(&c);
}

/* Builds a GET of [index, index] waiting wait_ms, request id `id`. */
static void add_wait_get(struct tp_fb *fb, uint32_t g, uint32_t k, uint64_t index,
			 uint32_t wait_ms, uint64_t id)
{
	char gn[16], mid[16];
	group_name(g, gn);
	member_name(k, mid);
	struct tp_addr a = {.group = gn, .target = mid, .sender = "", .request_id = id};
	struct tp_get req = {.index = index, .to = index, .has_wait = true, .wait_ms = wait_ms};
	tt_assert(tp_fb_add_get(fb, &a, &req) == 0);
}

static int reply_code(const struct tp_hdr *h)
{
	if (h->type == TP_GET_RESP)
		return 0;
	struct tp_error e;
	tt_assert(h->type == TP_ERROR && tp_decode_error(h, &e) == 0, "got %s",
		  tp_type_name(h->type));
	return e.code;
}

/* A read past the commit index waits up to its wait_ms: answered with the
 * entry once it commits, else "not committed" at the end of the wait; at
 * most RT_MAX_WAITING_GETS (1,024) wait per member, more are busy at once;
 * those waiting when the member is removed are answered DL_ECLOSED. */
static void reads_past_the_commit_wait_bounded_and_are_answered_on_removal(void)
{
	enum { MAX_WAITING = 1024, EXTRA = 8 };
	dl_log_set_level(DL_LOG_WARN);
	struct cluster c;
	cluster_start(&c);
	tt_assert(wait_leaders(&c, true, 10000), "no preferred leader in every group");
	uint64_t last = append_to_group(&c, 1, 3, "w");
	tt_assert(wait_commit(&c, 1, last, 5000));
	uint32_t f = 2; /* g1's preferred leader is n1 */
	struct tclient cl;
	tt_assert(tc_open(&cl, c.addr[f]) == 0);
	struct tp_fb fb;
	tp_fb_init(&fb, 1 << 20);
	struct tp_hdr h;
	/* Times out: "not committed", after the wait. */
	uint64_t t0 = dl_now_ns();
	add_wait_get(&fb, 1, f, last + 1, 300, 21);
	tt_assert(tc_call(&cl, &fb, 21, &h, 5000) == 0);
	double ms = (double)(dl_now_ns() - t0) / 1e6;
	tt_assert(reply_code(&h) == DL_ENOTCOMMITTED);
	tt_assert(ms >= 290 && ms < 3000, "answered after %.0f ms", ms);
	/* Waits, and gets the entry once it commits. */
	tp_fb_reset(&fb);
	add_wait_get(&fb, 1, f, last + 1, 10000, 22);
	tt_assert(tc_send(&cl, &fb) == 0);
	uint64_t next = append_to_group(&c, 1, 1, "late");
	tt_assert(next == last + 1);
	tt_assert(tc_wait(&cl, 22, &h, 5000) == 0);
	tt_assert(reply_code(&h) == 0, "code %d", reply_code(&h));
	/* The bound: 1,024 wait, the rest are busy at once. */
	tp_fb_reset(&fb);
	for (uint32_t i = 0; i < MAX_WAITING + EXTRA; i++)
		add_wait_get(&fb, 1, f, last + 100, 20000, 1000 + i);
	tt_assert(tc_send(&cl, &fb) == 0);
	tt_assert(tc_wait(&cl, 1000 + MAX_WAITING + EXTRA - 1, &h, 5000) == 0);
	tt_assert(reply_code(&h) == DL_EBUSY);
	/* The status is what the actor last published: wait for it. */
	struct rt_member_status st;
	uint64_t until = dl_now_ns() + 10000000000ull;
	do {
		tt_assert(member(&c, f, 1, &st));
		if (st.waiting_gets == MAX_WAITING && st.get_wait_busy == EXTRA)
			break;
		usleep(2000);
	} while (dl_now_ns() < until);
	tt_assert(st.waiting_gets == MAX_WAITING, "%u waiting", st.waiting_gets);
	tt_assert(st.get_wait_busy == EXTRA, "%llu busy", (unsigned long long)st.get_wait_busy);
	tt_assert(st.get_wait_timeouts == 1);
	/* Removal answers every waiting read. */
	tt_assert(rt_node_remove(c.node[f], "g1", "n2") == 0);
	tt_assert(tc_wait(&cl, 1000, &h, 5000) == 0);
	tt_assert(reply_code(&h) == DL_ECLOSED, "code %d", reply_code(&h));
	tt_assert(tc_wait(&cl, 1000 + MAX_WAITING - 1, &h, 5000) == 0);
	tt_assert(reply_code(&h) == DL_ECLOSED);
	tp_fb_free(&fb);
	tc_close(&cl);
	cluster_stop(&c);
}

int main(void)
{
	static const struct tt_test tests[] = {
		TT_T(groups_elect_replicate_and_commit_on_three_nodes),
		TT_T(groups_fail_over_when_a_node_stops_and_it_catches_up_on_restart),
		TT_T(forged_frames_change_no_data_and_no_liveness),
		TT_T(damage_on_two_followers_is_repaired_from_each_other),
		TT_T(a_damaged_entry_on_the_leader_moves_leadership_and_the_leader_repairs_itself),
		TT_T(pending_bytes_past_the_bound_are_answered_busy),
		TT_T(follower_reads_right_after_acknowledged_appends_return_the_entry),
		TT_T(reads_past_the_commit_wait_bounded_and_are_answered_on_removal),
		TT_T(tls_cluster_elects_replicates_and_reads),
		TT_T(tls_client_certificates_cannot_speak_raft),
		TT_T(tls_handshake_failures_are_logged_and_counted),
		TT_T(tls_plaintext_peer_cannot_join),
		TT_T(tls_connections_dropped_mid_handshake_do_not_stop_the_listener),
		TT_T(a_node_without_tls_on_a_public_address_warns),
	};
	return tt_run("runtime", tests, TT_COUNT(tests));
}
