#!/bin/sh
# stallwatch::pg against pgbench's select-only transaction on the same
# throwaway server, interleaved: each round runs pgbench in both protocols,
# then stallwatch plain, pipelined and pipelined unprepared, ROUNDS times (the
# machine is shared: interleaving spreads its drift over all of them). Prints
# each run and the medians. Runs itself inside pg_virtualenv.
#
#   bench/pg/run.sh BUILD_DIR [SECONDS] [ROUNDS]
#
#   pgbench:                pgbench -S -n -c 32 -j 1 -M extended -T SECONDS (per-transaction
#                           log for p50/p99): the issue's anchor
#   pgbench_p:              the same with -M prepared
#   stallwatch plain:       one loop, 32 fibers, a pool of 32
#   stallwatch pipelined:   one loop, 32 fibers, a pool of 4
#   stallwatch unprepared:  pipelined, with ConnectOptions::prepare_threshold
#                           std::nullopt (never prepared, as before the cache)
#
# BATCH_ROW=1 adds a sixth run to each round, "batch": the pipelined run with
# STALLWATCH_SCHED_BATCH=1 (the loop's thread under SCHED_BATCH, an opt-in
# library setting: not the target's figure, shown beside it).
#
# Besides the rate and latency, each run's CPU per query in µs: cpu_us, the
# client process's (pgbench: all of its run, start-up included; stallwatch:
# the measured window), and server_us, the server's (the postmaster and its
# backends, those that ended included, over the whole run).
set -eu
default_seconds=10 default_rounds=3
. "$(dirname "$0")/setup.sh"
# CPU seconds of the postmaster and its children, reaped ones included.
server_cpu() {
  python3 - "$postmaster" <<'PY'
import os, sys
pm, ticks = sys.argv[1], 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if pid == pm or f[1] == pm:
        ticks += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
print(ticks / os.sysconf("SC_CLK_TCK"))
PY
}
echo "load: $(uptime)"
for r in $(seq "$rounds"); do
  for mode in extended prepared; do
    s0=$(server_cpu)
    cpu=$(cd "$work" && rm -f pgbench_log.* && python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)' pgbench -S -n -c 32 -j 1 -M "$mode" -T "$seconds" -l)
    s1=$(server_cpu)
    name=pgbench
    [ "$mode" = prepared ] && name=pgbench_p
    cat "$work"/pgbench_log.* | python3 -c '
import sys
name, seconds, cpu, s0, s1 = sys.argv[1], *map(float, sys.argv[2:])
lat = sorted(int(l.split()[2]) for l in sys.stdin)
n = len(lat)
print("%-11s queries %d tps %.0f p50_us %d p99_us %d cpu_us %.1f server_us %.1f" % (
    name, n, n / seconds, lat[n // 2], lat[min(n - 1, int(n * 0.99))], cpu * 1e6 / n, (s1 - s0) * 1e6 / n))' \
      "$name" "$seconds" "$cpu" "$s0" "$s1"
  done
  runs='plain:32 pipelined:4 unprepared:4'
  [ "${BATCH_ROW:-0}" = 1 ] && runs="$runs batch:4"
  for run in $runs; do
    s0=$(server_cpu)
    batch=0 prepare=auto
    [ "${run%:*}" = batch ] && batch=1
    [ "${run%:*}" = unprepared ] && prepare=never
    out=$(STALLWATCH_SCHED_BATCH=$batch "$bench" 32 "${run#*:}" "$seconds" 100000 "$prepare" 2>>"$work/stderr")
    s1=$(server_cpu)
    echo "$out" | python3 -c '
import sys
name, s0, s1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
f = sys.stdin.read().split()
d = dict(zip(f[::2], f[1::2]))
print("%-11s queries %s tps %s p50_us %s p99_us %s cpu_us %s server_us %.1f" % (
    name, d["queries"], d["tps"], d["p50_us"], d["p99_us"], d["cpu_us"], (s1 - s0) * 1e6 / int(d["all"])))' \
      "${run%:*}" "$s0" "$s1"
  done
done | tee "$work/runs"
echo "load: $(uptime)"
python3 - "$work/runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault(f[0], []).append({f[i]: float(f[i + 1]) for i in range(1, len(f), 2)})
fields = ("tps", "p50_us", "p99_us", "cpu_us", "server_us")
med = {k: {m: statistics.median(r[m] for r in v) for m in fields} for k, v in runs.items()}
for k, m in med.items():
    print(f"median {k:11} tps {m['tps']:.0f} p50 {m['p50_us']:.0f} us p99 {m['p99_us']:.0f} us"
          f" cpu/query {m['cpu_us']:.1f} us server cpu/query {m['server_us']:.1f} us")
# Against both of pgbench's protocols: -M extended (unnamed statements, the
# issue's anchor) and -M prepared (each statement prepared once per
# connection, as stallwatch::pg does for a statement run 5 times).
for anchor in ("pgbench", "pgbench_p"):
    base = med[anchor]["tps"]
    print(f"against {anchor:9}: plain {med['plain']['tps'] / base:.2f}x, pipelined {med['pipelined']['tps'] / base:.2f}x,"
          f" pipelined unprepared {med['unprepared']['tps'] / base:.2f}x")
# Queries per CPU-second, client and server together: what 2 quiet cores
# would serve when both sides keep them busy. Under load the rates follow
# the scheduler instead, which shares the cores per thread (pgbench's 32
# backends outnumber the pipelined run's 4).
per_cpu = {k: 1e6 / (m["cpu_us"] + m["server_us"]) for k, m in med.items()}
print("queries per CPU-second: " + ", ".join(
    f"{k} {v:.0f} ({v / per_cpu['pgbench']:.2f}x)" for k, v in per_cpu.items()))
if "batch" in med:
    print(f"batch (STALLWATCH_SCHED_BATCH=1, opt-in) / pgbench {med['batch']['tps'] / med['pgbench']['tps']:.2f}x")
PY
