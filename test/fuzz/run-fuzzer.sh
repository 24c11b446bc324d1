#!/usr/bin/env bash
# run-fuzzer.sh EXE NAME SEEDS OUT [libFuzzer flags...]
#
# Runs one libFuzzer target for $FUZZ_SECONDS seconds (60 by default),
# seeded with the committed corpus SEEDS (read only). New inputs go to
# OUT/corpus (kept between runs), crashes, leaks and timeouts to
# OUT/crashes, libFuzzer's output to OUT/last.log. Prints one summary line;
# on a failure, the end of the report, the reproducer and the command that
# replays it, and exits 1. The meson test 'fuzz-NAME' (suite 'fuzz') calls
# this; so do `./run test` and `./run fuzz` through it. $FUZZ_SEED, when
# set, is libFuzzer's -seed: `./run test` sets one, so that a test run
# explores the same inputs each time (from a fresh clone); `./run fuzz`
# leaves it random.
set -uo pipefail
exe=$(readlink -f "$1") name=$2 seeds=$3 out=$4
shift 4
secs=${FUZZ_SECONDS:-60}
mkdir -p "$out/corpus" "$out/crashes"
log=$out/last.log

# The targets' scratch directories (fz_scratch_dir) go to memory when it
# can: the recovery target writes and syncs a store per input.
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
scratch=$(mktemp -d "$shm/dledger-fuzz-$name-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# libFuzzer stops itself at max_total_time; `timeout` only guards against a
# wedged process.
TMPDIR=$scratch timeout --kill-after=30 $((secs + 120)) "$exe" \
	-max_total_time="$secs" -timeout=10 -print_final_stats=1 \
	-artifact_prefix="$out/crashes/" ${FUZZ_SEED:+-seed="$FUZZ_SEED"} "$@" "$out/corpus" "$seeds" \
	>"$log" 2>&1
rc=$?

final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
runs=$(final_stat number_of_executed_units)
speed=$(final_stat average_exec_per_sec)
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1)
if [ "$rc" -eq 0 ]; then
	echo "fuzz-$name: ${secs} s, ${runs:-?} runs (${speed:-?}/s), ${cov:-cov: ?}, ${corp:-corp: ?} inputs; no crash"
	exit 0
fi

echo "fuzz-$name: FAILED (exit $rc) after ${runs:-?} runs; the end of $log:"
tail -n 80 "$log"
echo
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
	echo "fuzz-$name: the fuzzer itself did not stop in time (killed)"
fi
found=0
while read -r path; do
	[ -n "$path" ] || continue
	found=1
	echo "fuzz-$name: reproducer: $path"
	echo "fuzz-$name: replay it:   $exe $path"
	echo "fuzz-$name: once fixed, keep it: cp $path $seeds/<what-it-caught>"
done < <(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
[ "$found" -eq 1 ] || echo "fuzz-$name: no reproducer written; see $log"
exit 1
