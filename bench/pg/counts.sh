#!/bin/sh
# Where the CPU per query goes: for pgbench's select-only run and for
# stallwatch::pg's, the system calls, context switches and CPU time per
# query of the client process and of the server's backends, counted with
# `perf stat` (tracepoints: run as root) over a window in the middle of each
# run. Runs itself inside pg_virtualenv, as bench/pg/run.sh does.
#
#   bench/pg/counts.sh BUILD_DIR [SECONDS] [ROUNDS]
#
# Runs, each SECONDS long (default 5), the counts taken over 2 s after 2 s:
#   pgbench            pgbench -S -n -c 32 -j 1 -M extended
#   plain 32 32        stallwatch-bench-pg 32 32: 32 fibers, a pool of 32
#   pipelined 32 4     stallwatch-bench-pg 32 4: 32 fibers, a pool of 4
#   pipelined 128 4    128 fibers on the same pool of 4 (32 in flight per connection)
#   ... batch          under SCHED_BATCH (a thread woken up does not preempt
#                      the one running on its CPU): pgbench under `chrt -b 0`,
#                      stallwatch with STALLWATCH_SCHED_BATCH=1 (its loop's
#                      thread only; opt-in)
# Per query (the server sends one packet per query: each Sync's reply), for
# the client and the server: sendto, recvfrom, epoll_wait, poll, ppoll,
# setsockopt calls, sched_switch (context switches) and cpu_us.
set -eu
default_seconds=5 default_rounds=1
. "$(dirname "$0")/setup.sh"
events=task-clock,sched:sched_switch
for call in sendto recvfrom epoll_wait poll ppoll setsockopt; do events="$events,syscalls:sys_enter_$call"; done

# count NAME PID: counts the client PID and the postmaster's children.
count() {
  sleep 2
  backends=$(pgrep -d, -P "$postmaster")
  perf stat -x, -e "$events" -p "$backends" -- sleep 2 2>"$work/server.csv" &
  perf stat -x, -e "$events" -p "$2" -- sleep 2 2>"$work/client.csv"
  wait "$!"
  python3 - "$1" "$work/client.csv" "$work/server.csv" <<'PY'
import sys
def load(path):
    counts = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) > 3 and f[0].replace(".", "", 1).isdigit():
            counts[f[2].split(":")[-1].replace("sys_enter_", "")] = float(f[0])
    return counts
client, server = load(sys.argv[2]), load(sys.argv[3])
queries = server["sendto"]
def per_query(c):
    calls = " ".join(f"{k} {c.get(k, 0) / queries:.2f}" for k in
                     ("sendto", "recvfrom", "epoll_wait", "poll", "ppoll", "setsockopt", "sched_switch"))
    return f"{calls} cpu_us {c['task-clock'] * 1e3 / queries:.1f}"
print(f"{sys.argv[1]:20} queries/s {queries / 2:.0f}")
print(f"  client  {per_query(client)}")
print(f"  server  {per_query(server)}")
PY
}

pgbench_run() {  # NAME [chrt -b 0]
  name=$1; shift
  "$@" pgbench -S -n -c 32 -j 1 -M extended -T "$seconds" >/dev/null 2>&1 &
  sleep 0.5
  count "$name" "$(pgrep -n -x pgbench)"
  wait
}

bench_run() {  # NAME FIBERS POOL [env VAR=VALUE]
  name=$1 fibers=$2 pool=$3; shift 3
  "$@" "$bench" "$fibers" "$pool" "$seconds" >/dev/null 2>>"$work/stderr" &
  count "$name" "$!"
  wait
}

echo "load: $(uptime)"
for r in $(seq "$rounds"); do
  pgbench_run "pgbench"
  pgbench_run "pgbench batch" chrt -b 0
  bench_run "plain 32 32" 32 32
  bench_run "pipelined 32 4" 32 4
  bench_run "pipelined 32 4 batch" 32 4 env STALLWATCH_SCHED_BATCH=1
  bench_run "pipelined 128 4" 128 4
done
echo "load: $(uptime)"
