#!/usr/bin/env bash
# HTTP: stallwatch-demo (watchdog on) against nginx-light (1 worker, `return
# 200`), Node.js http and Python asyncio streams, measured with wrk at 100
# and 10,000 keep-alive connections. Each server is pinned to CPU 0 and wrk
# to CPU 1 with taskset. Prints a Markdown table (also written to
# $OUT/results.md), with each server's CPU time per request (all its
# processes and threads), which other load on the machine does not skew.
#
# usage: bench/http/run.sh path/to/stallwatch-demo
# env:   DURATION=10s  ROUNDS=3  CONNECTIONS="100 10000"  SERVERS="stallwatch nginx node asyncio"
#        SERVER_CPU=0  WRK_CPU=1  OUT=$TMPDIR/stallwatch-http-bench
set -euo pipefail
demo=${1:?usage: run.sh path/to/stallwatch-demo}
demo=$(cd "$(dirname "$demo")" && pwd)/$(basename "$demo")
here=$(cd "$(dirname "$0")" && pwd)
duration=${DURATION:-10s}
rounds=${ROUNDS:-3}
connections=${CONNECTIONS:-"100 10000"}
servers=${SERVERS:-"stallwatch nginx node asyncio"}
server_cpu=${SERVER_CPU:-0}
wrk_cpu=${WRK_CPU:-1}
out=${OUT:-${TMPDIR:-/tmp}/stallwatch-http-bench}
mkdir -p "$out"

for tool in wrk taskset; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run.sh: nothing listens on port $1" >&2
  return 1
}

start_server() {  # name port
  local name=$1 port=$2
  case "$name" in
    stallwatch)
      STALLWATCH_WATCHDOG=on STALLWATCH_METRICS_ADDR=off \
        taskset -c "$server_cpu" "$demo" --port "$port" >"$out/$name-$round.log" 2>&1 &
      ;;
    nginx)
      command -v nginx >/dev/null || { echo "skip"; return 1; }
      mkdir -p "$out/nginx"
      sed -e "s|@PORT@|$port|" -e "s|@DIR@|$out/nginx|" "$here/nginx.conf.in" >"$out/nginx/nginx.conf"
      taskset -c "$server_cpu" nginx -e "$out/nginx/error.log" -p "$out/nginx" -c "$out/nginx/nginx.conf" >"$out/$name-$round.log" 2>&1 &
      ;;
    node)
      command -v node >/dev/null || { echo "skip"; return 1; }
      taskset -c "$server_cpu" node "$here/node_server.js" "$port" >"$out/$name-$round.log" 2>&1 &
      ;;
    asyncio)
      taskset -c "$server_cpu" python3 "$here/asyncio_server.py" "$port" >"$out/$name-$round.log" 2>&1 &
      ;;
  esac
  server_pid=$!
  wait_port "$port"
}

# CPU time (clock ticks) used so far by the server: its process and its
# children (nginx's worker), all threads. A noise-proof measure of work per
# request: time other processes take on the server's core does not count.
server_cpu_ticks() {
  local total=0 pid fields
  for pid in "$server_pid" $(pgrep -P "$server_pid" || true); do
    read -ra fields <"/proc/$pid/stat" 2>/dev/null || continue
    # fields 14 and 15 (utime, stime); the name in field 2 has no spaces here
    total=$((total + fields[13] + fields[14]))
  done
  echo "$total"
}

# One wrk run; prints "rps|p50|p99|errors|server CPU µs per request".
measure() {  # port connections
  local port=$1 conns=$2 log cpu_before cpu_after
  log="$out/wrk-$name-$conns-$round.txt"
  cpu_before=$(server_cpu_ticks)
  taskset -c "$wrk_cpu" wrk -t1 -c"$conns" -d"$duration" --timeout 10s --latency "http://127.0.0.1:$port/" >"$log" 2>&1 || true
  cpu_after=$(server_cpu_ticks)
  python3 - "$log" "$((cpu_after - cpu_before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
cpu_s = int(sys.argv[2]) / int(sys.argv[3])
def latency(p):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\b" % p, text, re.M)
    if not m:
        return "n/a"
    v, unit = float(m.group(1)), m.group(2)
    ms = v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    return "%.3f" % ms
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
errors = 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    errors += sum(int(x) for x in m.groups())
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if m:
    errors += int(m.group(1))
done = re.search(r"(\d+) requests in", text)
cpu_per_request = "%.2f" % (cpu_s * 1e6 / int(done.group(1))) if done and int(done.group(1)) > 0 else "n/a"
print("%s|%s|%s|%d|%s" % ("%.0f" % float(rps.group(1)) if rps else "n/a", latency(50), latency(99), errors,
                          cpu_per_request))
PY
}

# Servers take turns within each round, so a burst of load from elsewhere on
# the machine hits them alike; the table shows the median of the rounds.
: >"$out/raw.tsv"
for round in $(seq "$rounds"); do
  for name in $servers; do
    port=$(free_port)
    if ! start_server "$name" "$port" >/dev/null; then
      echo "run.sh: $name not available, skipped" >&2
      continue
    fi
    # Warm up (JITs, caches, accept queue) before measuring.
    taskset -c "$wrk_cpu" wrk -t1 -c100 -d2s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
    for conns in $connections; do
      IFS='|' read -r rps p50 p99 errors cpu_us < <(measure "$port" "$conns")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$conns" "$rps" "$p50" "$p99" "$errors" "$cpu_us" |
        tee -a "$out/raw.tsv"
    done
    stop_server
    # The demo's watchdog reports any stall of its loop: a slow round with
    # reports was the demo's own doing, one without was not.
    if [ "$name" = stallwatch ]; then
      stalls=$(grep -c "^stallwatch: stall loop=" "$out/$name-$round.log" || true)
      echo "run.sh: round $round: the demo's watchdog reported $stalls stalls ($out/$name-$round.log)" >&2
    fi
  done
done

python3 - "$out/raw.tsv" "$servers" "$connections" >"$out/results.md" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("| server | connections | requests/s | p50 | p99 | errors | server CPU per request | rounds |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name in sys.argv[2].split():
    for conns in sys.argv[3].split():
        got = [r for r in rows if r[0] == name and r[1] == conns and "n/a" not in r[2:5]]
        if not got:
            continue
        med = lambda i: statistics.median(float(r[i]) for r in got)
        cpu = [float(r[6]) for r in got if r[6] != "n/a"]
        print("| %s | %s | %.0f | %.2f ms | %.2f ms | %d | %s | %d |" % (
            name, conns, med(2), med(3), med(4), sum(int(r[5]) for r in got),
            "%.2f µs" % statistics.median(cpu) if cpu else "n/a", len(got)))

# Paired by round: the VM's speed drifts between rounds (and between server
# processes) by more than the servers differ, so each round's ratio compares
# two servers under the same conditions; the median of those ratios is the
# comparison the target is read from.
def paired(other, conns):
    by_round = lambda name: [r for r in rows if r[0] == name and r[1] == conns]
    return [(a, b) for a, b in zip(by_round("stallwatch"), by_round(other)) if "n/a" not in a[2:5] + b[2:5]]
lines = []
for other in sys.argv[2].split():
    if other == "stallwatch":
        continue
    for conns in sys.argv[3].split():
        pairs = paired(other, conns)
        if not pairs:
            continue
        rps = [float(a[2]) / float(b[2]) for a, b in pairs]
        p99 = [float(a[4]) / float(b[4]) for a, b in pairs]
        lines.append("| %s | %s | %.2f | %d of %d | %.2f | %d of %d |" % (
            other, conns, statistics.median(rps), sum(x >= 1 for x in rps), len(pairs),
            statistics.median(p99), sum(x <= 1 for x in p99), len(pairs)))
if lines:
    print()
    print("| stallwatch against | connections | requests/s ratio, median of rounds | rounds with at least its requests/s "
          "| p99 ratio, median of rounds | rounds with p99 no worse |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
PY

echo
cat "$out/results.md"
echo "(wrk logs and raw rounds in $out)"
