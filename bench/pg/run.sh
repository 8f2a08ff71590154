#!/bin/sh
# stallwatch::pg against pgbench's select-only transaction on the same
# throwaway server, interleaved: each round runs pgbench, then stallwatch
# plain, then stallwatch pipelined, ROUNDS times (the machine is shared:
# interleaving spreads its drift over all three). Prints each run and the
# medians. Runs itself inside pg_virtualenv.
#
#   bench/pg/run.sh BUILD_DIR [SECONDS] [ROUNDS]
#
#   pgbench:                pgbench -S -n -c 32 -j 1 -M extended -T SECONDS (per-transaction
#                           log for p50/p99)
#   stallwatch plain:       one loop, 32 fibers, a pool of 32
#   stallwatch pipelined:   one loop, 32 fibers, a pool of 4
set -eu
build=$(cd "$1" && pwd)
seconds=${2:-10}
rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${PGVERSION:-}" ]; then
  exec "$here/../../tests/pg_test.sh" "$0" "$build" "$seconds" "$rounds"
fi
bench="$build/bench/stallwatch-bench-pg"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export STALLWATCH_METRICS_ADDR=off
pgbench -i -q -s 1 >/dev/null 2>&1
echo "load: $(uptime)"
for r in $(seq "$rounds"); do
  (cd "$work" && rm -f pgbench_log.* && pgbench -S -n -c 32 -j 1 -M extended -T "$seconds" -l >/dev/null 2>&1)
  cat "$work"/pgbench_log.* | python3 -c '
import sys
lat = sorted(int(l.split()[2]) for l in sys.stdin)
n = len(lat)
print(f"pgbench   queries {n} tps {n / '"$seconds"':.0f} p50_us {lat[n // 2]} p99_us {lat[min(n - 1, int(n * 0.99))]}")'
  echo "plain     $("$bench" 32 32 "$seconds" 2>>"$work/stderr")"
  echo "pipelined $("$bench" 32 4 "$seconds" 2>>"$work/stderr")"
done | tee "$work/runs"
echo "load: $(uptime)"
python3 - "$work/runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault(f[0], []).append({f[i]: float(f[i + 1]) for i in range(1, len(f), 2)})
med = {k: {m: statistics.median(r[m] for r in v) for m in ("tps", "p50_us", "p99_us")} for k, v in runs.items()}
for k, m in med.items():
    print(f"median {k:9} tps {m['tps']:.0f} p50 {m['p50_us']:.0f} us p99 {m['p99_us']:.0f} us")
base = med["pgbench"]["tps"]
print(f"plain / pgbench {med['plain']['tps'] / base:.2f}x, pipelined / pgbench {med['pipelined']['tps'] / base:.2f}x")
PY
