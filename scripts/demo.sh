#!/usr/bin/env bash
# The README's main job: three dledger-actors processes on loopback with the
# seed's three groups (g0: n0-n2, g1: a0-a2, g2: b0-b2; preferred leaders n0,
# a1, b2 on three different nodes), in a fresh directory. Waits for the
# leaders, appends a few thousand entries to every group, reads some back from
# followers, prints the cluster table, stops the nodes and exits 0.
# With --tls the nodes and the client run with mutual TLS, with certificates
# made for the run (scripts/make-certs.sh), and a plaintext client is shown
# being refused.
# Usage: scripts/demo.sh BUILD_DIR [--tls]
set -euo pipefail
build=${1:-build}
tls=0
case "${2:-}" in
--tls) tls=1 ;;
'') ;;
*) echo "usage: $0 BUILD_DIR [--tls]" >&2; exit 2 ;;
esac
actors=$build/cmd/dledger-actors
ctl=$build/cmd/dledger-ctl
entries=${DEMO_ENTRIES:-3000}
dir=$(mktemp -d /tmp/dledger-demo-XXXXXX)
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
ports=($(free_port) $(free_port) $(free_port))
for k in 0 1 2; do
	sed -e "s#/tmp/dledger-example/node$k#$dir/node$k#" \
	    -e "s#127.0.0.1:10000#127.0.0.1:${ports[0]}#g" \
	    -e "s#127.0.0.1:10001#127.0.0.1:${ports[1]}#g" \
	    -e "s#127.0.0.1:10002#127.0.0.1:${ports[2]}#g" \
	    examples/node$k.yaml > "$dir/node$k.yaml"
done
tlsopts=()
if [ $tls = 1 ]; then
	echo "== mutual TLS: a CA, a node certificate for 127.0.0.1 and a client certificate"
	"$(dirname "$0")/make-certs.sh" "$dir/certs" 127.0.0.1 | sed 's/^/   /'
	for k in 0 1 2; do
		printf 'tlsCertFile: %s\ntlsKeyFile: %s\ntlsCaFile: %s\n' "$dir/certs/node-127.0.0.1.crt" \
			"$dir/certs/node-127.0.0.1.key" "$dir/certs/ca.crt" >>"$dir/node$k.yaml"
	done
	tlsopts=(--tls-cert "$dir/certs/client.crt" --tls-key "$dir/certs/client.key"
		--tls-ca "$dir/certs/ca.crt")
fi
# With TLS, nng 1.5.2 can end a client's redial loop to a member until the
# client gives it a new dialer, seconds later (docs/OPERATIONS.md, "Securing
# a cluster"); an append then waits for it, retried by the client.
slow=()
if [ $tls = 1 ]; then slow=(--timeout 20000); fi
# dledger-ctl with the client certificate when TLS is on.
ctl_() { "$ctl" "$1" "${tlsopts[@]}" "${@:2}"; }
peers() { echo "${1}0-127.0.0.1:${ports[0]};${1}1-127.0.0.1:${ports[1]};${1}2-127.0.0.1:${ports[2]}"; }
all="n0-127.0.0.1:${ports[0]};n1-127.0.0.1:${ports[1]};n2-127.0.0.1:${ports[2]}"
groups=(g0 g1 g2)
prefixes=(n a b)

echo "== starting 3 nodes in $dir (ports ${ports[*]})"
for k in 0 1 2; do
	"$actors" --config "$dir/node$k.yaml" 2>"$dir/node$k.log" &
	pids+=($!)
done

echo "== waiting for each group's preferred leader (n0, a1, b2)"
t0=$SECONDS
ok=0
for _ in $(seq 1 300); do
	if ctl_ metadata --peers "$all" --json --timeout 1000 2>/dev/null | python3 -c '
import json, sys
rows = json.load(sys.stdin)
want = {"g0": "n0", "g1": "a1", "g2": "b2"}
seen = {g: set() for g in want}
for r in rows:
    if r.get("group") in want:
        seen[r["group"]].add(r.get("leader"))
sys.exit(0 if all(seen[g] == {want[g]} for g in want) else 1)'; then ok=1; break; fi
	sleep 0.1
done
[ $ok = 1 ] || { echo "demo: leaders did not settle; logs in $dir" >&2; tail -5 "$dir"/node*.log >&2; exit 1; }
echo "   settled after $((SECONDS - t0)) s"

for i in 0 1 2; do
	g=${groups[$i]} p=${prefixes[$i]}
	seq -f "$g entry %g" 1 "$entries" | ctl_ append --peers "$(peers $p)" --group "$g" "${slow[@]}" >"$dir/$g.acks"
	n=$(wc -l <"$dir/$g.acks")
	[ "$n" = "$entries" ] || { echo "demo: $g: only $n of $entries appends acknowledged" >&2; exit 1; }
	echo "== $g: $n entries appended and committed (indexes $(head -1 "$dir/$g.acks" | cut -d' ' -f1)..$(tail -1 "$dir/$g.acks" | cut -d' ' -f1))"
done

echo "== reading back from followers"
# A follower learns the newest commit index from the leader's next message
# (at most a heartbeat later): retry for a moment.
get_from() {
	for _ in $(seq 1 50); do
		ctl_ get --peers "$(peers "$1")" --group "$2" --index "$3" --member "$4" --lines \
			2>/dev/null && return 0
		sleep 0.1
	done
	ctl_ get --peers "$(peers "$1")" --group "$2" --index "$3" --member "$4" --lines
}
for i in 0 1 2; do
	g=${groups[$i]} p=${prefixes[$i]}
	follower="$p$(( (i + 1) % 3 ))"
	i1=$(head -1 "$dir/$g.acks" | cut -d' ' -f1)
	iN=$(tail -1 "$dir/$g.acks" | cut -d' ' -f1)
	first=$(get_from "$p" "$g" "$i1" "$follower")
	last=$(get_from "$p" "$g" "$iN" "$follower")
	echo "   $g from follower $follower: index $i1 = '$first', index $iN = '$last'"
	[ "$first" = "$g entry 1" ] && [ "$last" = "$g entry $entries" ] ||
		{ echo "demo: $g: follower $follower returned other entries" >&2; exit 1; }
done

# metadata_ ARGS...: dledger-ctl metadata, asked again (at most 5 times) when
# a node does not answer in time (with TLS, nng 1.5.2 can stop a node's
# listener for the seconds its watchdog takes to reopen it:
# docs/OPERATIONS.md, "Securing a cluster").
metadata_() {
	local out
	for _ in 1 2 3 4; do
		out=$(ctl_ metadata --peers "$all" "$@" 2>/dev/null) && { printf '%s\n' "$out"; return 0; }
	done
	ctl_ metadata --peers "$all" "$@"
}
echo
echo "== the cluster, as each node knows it"
metadata_
echo
echo "== leaders per node"
metadata_ --json | python3 -c '
import json, sys
rows = json.load(sys.stdin)
count = {}
for r in rows:
    if r.get("role") == "leader":
        count[r["address"]] = count.get(r["address"], 0) + 1
for addr in sorted(count):
    print("   %s leads %d group(s)" % (addr, count[addr]))'

if [ $tls = 1 ]; then
	echo
	echo "== a client without a certificate is refused"
	if "$ctl" metadata --peers "n0-127.0.0.1:${ports[0]}" --timeout 1000 2>"$dir/plain.err"; then
		echo "demo: a plaintext client got an answer from a TLS node" >&2; exit 1
	fi
	echo "   dledger-ctl: $(sed 's/^dledger-ctl: //' "$dir/plain.err")"
	line=
	for _ in $(seq 1 50); do
		line=$(grep -m1 "TLS handshake" "$dir/node0.log" || true)
		[ -n "$line" ] && break
		sleep 0.1
	done
	[ -n "$line" ] || { echo "demo: node 0 did not log the refused handshake" >&2; exit 1; }
	echo "   node 0: ${line#*WARN  }"
fi

echo "== stopping the nodes (SIGTERM)"
for p in "${pids[@]}"; do kill -TERM "$p"; done
failed=()
for k in "${!pids[@]}"; do
	rc=0
	wait "${pids[$k]}" || rc=$?
	[ "$rc" -eq 0 ] || failed+=("$k:$rc")
done
pids=()
if [ ${#failed[@]} -gt 0 ]; then
	for f in "${failed[@]}"; do
		echo "demo: node ${f%%:*} exited with status ${f#*:}; the end of its log:" >&2
		tail -n 60 "$dir/node${f%%:*}.log" >&2
	done
	exit 1
fi
echo "== done"
