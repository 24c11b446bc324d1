#!/usr/bin/env bash
# Smoke test of the cluster benchmark (bench/cluster_bench.c): a short
# `dledger-bench --spawn` run must exit 0 and append one CSV row with
# committed entries and no errors; every node it started must be gone and its
# directory removed afterwards, also when it is stopped by SIGTERM midway;
# a bad option must exit 2 with a message.
# Usage: bench_smoke.sh PATH/TO/dledger-bench PATH/TO/dledger-actors
set -euo pipefail
bench=$1
actors=$2
tmp=$(mktemp -d /tmp/dl-bench-smoke-XXXXXX)
# The bench makes its cluster's directory under TMPDIR: here, inside $tmp,
# so "a process whose command line names $tmp" is exactly a node it started.
export TMPDIR=$tmp
pid=
cleanup() {
	# A bench killed here takes its nodes along (they ask for SIGTERM when
	# their parent dies).
	[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "bench_smoke: FAIL: $*" >&2; exit 1; }

# Nothing the bench started may be left: no process naming $tmp, no
# cluster directory.
check_gone() {
	for _ in $(seq 1 50); do
		pgrep -f -- "$tmp/dledger-bench-" >/dev/null || break
		sleep 0.1
	done
	if pgrep -af -- "$tmp/dledger-bench-"; then fail "$1: nodes left running"; fi
	if compgen -G "$tmp/dledger-bench-*" >/dev/null; then fail "$1: cluster directory left"; fi
}

# column NAME [CSV]: the value of that column in the CSV's first data row.
column() {
	awk -F, -v name="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i }
		NR == 2 { print $c }' "${2:-$tmp/out.csv}"
}

echo "== a short run"
rc=0
timeout 90 "$bench" --spawn --actors "$actors" --duration 2 --warmup 1 --clients 2 --inflight 8 \
	--csv "$tmp/out.csv" >"$tmp/run.out" 2>"$tmp/run.err" || rc=$?
cat "$tmp/run.out"
[ "$rc" = 0 ] || { cat "$tmp/run.err" >&2; fail "exit status $rc"; }
[ -f "$tmp/out.csv" ] || fail "no CSV written"
lines=$(wc -l <"$tmp/out.csv")
[ "$lines" = 2 ] || fail "CSV has $lines lines, want a header and one row"
head -1 "$tmp/out.csv" | grep -q '^time,label,' || fail "CSV header missing"
eps=$(column entries_per_s)
errors=$(column errors)
echo "entries/s $eps, errors $errors"
awk -v v="$eps" 'BEGIN { exit !(v > 0) }' || fail "no committed entries ($eps/s)"
[ "$errors" = 0 ] || fail "$errors errors"
cdf=$(column cdf_file)
[ -s "$tmp/$cdf" ] || fail "no CDF file '$cdf' next to the CSV"
check_gone "after a run"

echo "== a short run with mutual TLS (--tls: certificates made for the run)"
rc=0
timeout 90 "$bench" --spawn --tls --actors "$actors" --duration 2 --warmup 1 --clients 2 \
	--inflight 8 --csv "$tmp/tls.csv" >"$tmp/tls.out" 2>"$tmp/tls.err" || rc=$?
cat "$tmp/tls.out"
[ "$rc" = 0 ] || { cat "$tmp/tls.err" >&2; fail "--tls: exit status $rc"; }
[ "$(column label "$tmp/tls.csv")" = "run+tls" ] || fail "--tls: the row is not labelled run+tls"
eps=$(column entries_per_s "$tmp/tls.csv")
awk -v v="$eps" 'BEGIN { exit !(v > 0) }' || fail "--tls: no committed entries ($eps/s)"
[ "$(column errors "$tmp/tls.csv")" = 0 ] || fail "--tls: errors"
check_gone "after a TLS run"

echo "== SIGTERM midway"
"$bench" --spawn --actors "$actors" --duration 60 --warmup 1 >"$tmp/term.out" 2>"$tmp/term.err" &
pid=$!
for _ in $(seq 1 300); do
	grep -q "ready after" "$tmp/term.err" && break
	sleep 0.1
done
if ! grep -q "ready after" "$tmp/term.err"; then
	cat "$tmp/term.err" >&2
	fail "cluster not ready within 30 s"
fi
sleep 1
kill -TERM $pid
rc=0
for _ in $(seq 1 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && { kill -KILL $pid; fail "bench did not stop within 30 s of SIGTERM"; }
wait $pid || rc=$?
pid=
[ "$rc" = 130 ] || { cat "$tmp/term.err" >&2; fail "exit status $rc after SIGTERM, want 130"; }
check_gone "after SIGTERM"

echo "== a bad option"
rc=0
"$bench" --spawn --clients 0 >/dev/null 2>"$tmp/bad.err" || rc=$?
[ "$rc" = 2 ] || fail "--clients 0: exit status $rc, want 2"
grep -q -- "--clients" "$tmp/bad.err" || fail "--clients 0: no message naming the option"
rc=0
"$bench" --spawn --no-such-option >/dev/null 2>"$tmp/bad.err" || rc=$?
[ "$rc" = 2 ] || fail "unknown option: exit status $rc, want 2"
grep -q "unknown option" "$tmp/bad.err" || fail "unknown option: no message"
echo "bench_smoke: ok"
