#!/usr/bin/env bash
# The embedding example end to end (issue 16): libdledger installed with
# `meson install --destdir` into a temporary tree, examples/kv built against
# it with pkg-config alone (shared and static), three kv processes on
# 127.0.0.1 with free ports, puts, kill -9 of the leader, more puts to the
# new leader, the killed one restarted (it resumes from its snapshot's
# applied index), then every acknowledged put read back with its value.
#
# Usage: kv_test.sh SOURCE_ROOT BUILD_ROOT
# Every wait is bounded; every process started is stopped by its pid.
set -euo pipefail
src=$1
build=$2
tmp=$(mktemp -d /tmp/dl-kvtest-XXXXXX)
pids=()

cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do
		[ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		[ -n "$p" ] && wait "$p" 2>/dev/null || true
	done
	if [ $rc -ne 0 ]; then
		for f in "$tmp"/log*; do
			[ -f "$f" ] && { echo "---- $f (last lines)"; tail -n 30 "$f"; }
		done
	fi
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

echo "== meson install --destdir $tmp/inst"
meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/inst" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; fail "meson install"; }
pcdir=$(dirname "$(find "$tmp/inst" -name dledger.pc -print -quit)")
[ -f "$pcdir/dledger.pc" ] || fail "no dledger.pc installed"
libdir=$(dirname "$pcdir")
[ -f "$libdir/libdledger.a" ] || fail "no libdledger.a installed"
soname=$(readelf -d "$libdir/libdledger.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -n "$soname" ] && [ -e "$libdir/$soname" ] || fail "libdledger.so has no soname link ($soname)"
# Only the embedding API is exported.
others=$(nm -D --defined-only "$libdir/libdledger.so" | awk '{print $3}' | grep -v '^dl_' || true)
[ -z "$others" ] || fail "libdledger.so exports more than dl_*: $others"

echo "== building examples/kv with pkg-config alone (shared and static)"
export PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_SYSROOT_DIR="$tmp/inst"
make -s -C "$src/examples/kv" OUT="$tmp/kv" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail "make"; }
make -s -C "$src/examples/kv" STATIC=1 OUT="$tmp/kv-static" >>"$tmp/make.log" 2>&1 ||
	{ cat "$tmp/make.log"; fail "make STATIC=1"; }
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
export LD_LIBRARY_PATH="$libdir"
# (ldd's output in a variable first: `ldd | grep -q` can end ldd with
# SIGPIPE, which pipefail counts as a failure.)
deps=$(ldd "$tmp/kv")
[[ $deps == *"=> $libdir/libdledger.so"* ]] || { echo "$deps"; fail "kv does not use the installed libdledger.so"; }
deps=$(ldd "$tmp/kv-static")
[[ $deps != *libdledger* ]] || { echo "$deps"; fail "kv-static links libdledger.so"; }

# Six free ports: three for the nodes, three for the kv servers.
read -r -a ports < <(python3 - <<'PY'
import socket
socks = []
for _ in range(6):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
peers="n0-127.0.0.1:${ports[0]};n1-127.0.0.1:${ports[1]};n2-127.0.0.1:${ports[2]}"
servers="127.0.0.1:${ports[3]},127.0.0.1:${ports[4]},127.0.0.1:${ports[5]}"
kv_bin=("$tmp/kv" "$tmp/kv" "$tmp/kv-static") # node 2 runs the static build

start() {
	local k=$1
	"${kv_bin[$k]}" serve --id "n$k" --peers "$peers" --dir "$tmp/n$k" \
		--listen "127.0.0.1:${ports[$((3 + k))]}" >>"$tmp/log$k" 2>&1 &
	pids[$k]=$!
}

# leader: prints the index (0..2) of the node whose kv server says it
# leads, or nothing.
leader() {
	# awk reads all its input: an early exit could end kv with SIGPIPE.
	"$tmp/kv" status --servers "$servers" |
		awk '$2 == "ROLE" && $3 == "leader" && !found {print NR - 1; found = 1}'
}

wait_leader() {
	local deadline=$((SECONDS + $1)) l
	while [ $SECONDS -lt $deadline ]; do
		l=$(leader)
		[ -n "$l" ] && { echo "$l"; return 0; }
		sleep 0.1
	done
	return 1
}

# put FROM TO: puts k<i> = v<i>-<run>; records each acknowledged one.
run=$RANDOM
put_range() {
	local i
	for ((i = $1; i <= $2; i++)); do
		if idx=$("$tmp/kv" put --servers "$servers" "k$i" "v$i-$run" 2>>"$tmp/put.err"); then
			echo "k$i v$i-$run $idx" >>"$tmp/acked"
		else
			echo "put k$i not acknowledged" >>"$tmp/put.err"
		fi
	done
}

echo "== three kv processes on ports ${ports[*]}"
: >"$tmp/acked"
for k in 0 1 2; do start $k; done
first=$(wait_leader 20) || fail "no leader within 20 s"
echo "leader: n$first"

put_range 1 150
n1=$(wc -l <"$tmp/acked")
[ "$n1" -eq 150 ] || fail "only $n1 of 150 puts acknowledged with every node up"

echo "== kill -9 of the leader n$first (pid ${pids[$first]})"
kill -9 "${pids[$first]}"
wait "${pids[$first]}" 2>/dev/null || true
pids[$first]=""
t0=$SECONDS
put_range 151 300
n2=$(wc -l <"$tmp/acked")
echo "acknowledged: $n2 of 300 (the new leader took over within $((SECONDS - t0)) s of puts)"
[ "$n2" -ge 290 ] || fail "only $n2 of 300 puts acknowledged"
second=$(wait_leader 20) || fail "no leader after the kill"
[ "$second" != "$first" ] || fail "the killed node still leads"

echo "== n$first restarted: it resumes from its snapshot"
start "$first"
deadline=$((SECONDS + 20))
line=""
while [ -z "$line" ] && [ $SECONDS -lt $deadline ]; do
	line=$(grep -h "kv: serving on" "$tmp/log$first" | sed -n 2p) || true
	[ -n "$line" ] || sleep 0.1
done
echo "$line"
[[ $line =~ from\ applied\ index\ [1-9][0-9]*$ ]] || fail "n$first did not resume from a saved applied index"

echo "== every acknowledged put, read back from the leader"
bad=0
while read -r key val idx; do
	got=$("$tmp/kv" get --servers "$servers" "$key" 2>&1) || got="(error: $got)"
	if [ "$got" != "$val" ]; then
		echo "$key (index $idx): wanted '$val', got '$got'" >&2
		bad=$((bad + 1))
	fi
done <"$tmp/acked"
[ $bad -eq 0 ] || fail "$bad acknowledged puts lost or wrong"

# The restarted node caught up: once it leads, it serves them all too.
echo "== the restarted node applied everything (its status)"
deadline=$((SECONDS + 20))
last=$(awk '{print $3}' "$tmp/acked" | sort -n | tail -n 1)
caught=""
while [ $SECONDS -lt $deadline ]; do
	applied=$("$tmp/kv" status --servers "$servers" | sed -n "$((first + 1))p" | awk '{print $6}')
	if [ -n "$applied" ] && [ "$applied" -ge "$last" ] 2>/dev/null; then caught=1; break; fi
	sleep 0.1
done
[ -n "$caught" ] || fail "n$first did not apply up to $last within 20 s"

echo "== stopping (SIGTERM, then a bounded wait)"
for k in 0 1 2; do [ -n "${pids[$k]}" ] && kill -TERM "${pids[$k]}"; done
deadline=$((SECONDS + 20))
for k in 0 1 2; do
	p=${pids[$k]}
	[ -n "$p" ] || continue
	while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
	kill -0 "$p" 2>/dev/null && fail "kv n$k did not stop within 20 s of SIGTERM"
	wait "$p" || fail "kv n$k exited with $?"
	pids[$k]=""
done
echo "PASS: $n2 acknowledged puts, every one read back; leader n$first killed, n$second took over"
