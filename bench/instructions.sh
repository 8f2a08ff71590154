#!/usr/bin/env bash
# Instructions per operation, from valgrind's callgrind: deterministic, so it
# explains the timed results even on a loaded machine. Each case runs twice,
# with n and 2n operations; the difference divided by the extra operations
# cancels start-up. Then the functions that execute the most instructions in
# stallwatch's run, per operation.
#
#   bench/instructions.sh [build-dir]     (default: build-bench, see scripts/bench.sh)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-$root/build-bench}/bench"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
export STALLWATCH_METRICS_ADDR=off
# valgrind runs the loop ~50x slower: no slice may count as a stall (a capture
# and its symbolization would land in the count).
export STALLWATCH_THRESHOLD_MS=60000

# Instructions executed on the main thread by `<exe> <case> <n> 1` (a warm-up
# run plus one repetition). The other threads (stallwatch's watchdog) run on
# their own clock, so counting them would make the difference noise.
instructions() {
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/$1.$2.$3" \
    "$bin/stallwatch-bench-$1" "$2" "$3" 1 >/dev/null 2>&1
  mv "$out/$1.$2.$3-01" "$out/$1.$2.$3"
  rm -f "$out/$1.$2.$3"-*
  sed -n 's/^summary: *//p' "$out/$1.$2.$3"
}

# case, n, operations per unit of n
cases=("pingpong 50000 2" "spawn_join 20000 1")

printf '| case | implementation | instructions per operation |\n|---|---|---|\n'
for spec in "${cases[@]}"; do
  read -r name n per <<<"$spec"
  for impl in context fiber stallwatch; do
    small=$(instructions "$impl" "$name" "$n")
    large=$(instructions "$impl" "$name" $((2 * n)))
    # Two runs of the body (warm-up + one repetition) per process.
    awk -v a="$small" -v b="$large" -v ops=$((2 * n * per)) -v c="$name" -v i="$impl" \
      'BEGIN { printf "| %s | %s | %.0f |\n", c, i, (b - a) / ops }'
  done
done

for spec in "${cases[@]}"; do
  read -r name n per <<<"$spec"
  ops=$((2 * 2 * n * per))
  printf '\nstallwatch %s: the functions with the most instructions, per operation\n\n' "$name"
  callgrind_annotate "$out/stallwatch.$name.$((2 * n))" 2>/dev/null |
    sed -n '/file:function/,$p' | sed -n '3,16p' |
    awk -v ops="$ops" '{ n = $1; gsub(",", "", n); fn = $0; sub(/^.*%\) +/, "", fn); sub(/^[^:]*:/, "", fn);
                         sub(/\(.*/, "", fn); sub(/ \[.*/, "", fn); printf "  %6.1f  %s\n", n / ops, fn }'
done
