#!/usr/bin/env bash
# HTTP: stallwatch-demo (watchdog on) against nginx-light (1 worker, `return
# 200`), Node.js http and Python asyncio streams, measured with wrk at 100
# and 10,000 keep-alive connections. Each server is pinned to CPU 0 and wrk
# to CPU 1 with taskset. Prints a Markdown table (also written to
# $OUT/results.md), with each server's CPU time per request (all its
# processes and threads), which other load on the machine does not skew, and
# wrk's: how busy each side kept its core says which one limits the rate
# (wrk -t1 on one core tops out at 115,000-130,000 requests/s on the 2-core
# machine of docs/BENCHMARKS.md, whatever it loads).
#
# MODE=burst measures a freshly started server taking 10,000 connections at
# once (a deploy, a failover): each round starts each server anew and runs
# wrk at once, no warm-up, and records p99, timeouts, the kernel's
# ListenOverflows during the run and the deepest accept queue seen (ss, every
# 50 ms). The table gives each server's worst p99 over the rounds and its
# ratio to nginx's worst. BASELINE_DEMO=path adds the server "baseline", a
# demo built from another commit (before/after in one run).
#
# MODE=idle measures memory per idle keep-alive connection: each round starts
# each server anew, opens IDLE_CONNECTIONS (10,000) connections that make one
# request each and stay open (bench/http/idle_connections.py), and compares
# the server's resident set (all its processes) before and 1 s after. The
# demo runs with a header timeout longer than the run, so none is closed.
#
# usage: bench/http/run.sh path/to/stallwatch-demo
# env:   DURATION=10s  ROUNDS=3  CONNECTIONS="100 10000"  SERVERS="stallwatch nginx node asyncio"
#        SERVER_CPU=0  WRK_CPU=1  OUT=$TMPDIR/stallwatch-http-bench
#        MODE=steady|burst|idle  BURST_CONNECTIONS=10000  IDLE_CONNECTIONS=10000
#        BASELINE_DEMO=path/to/another/stallwatch-demo
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
mode=${MODE:-steady}
burst_connections=${BURST_CONNECTIONS:-10000}
idle_connections=${IDLE_CONNECTIONS:-10000}
baseline=${BASELINE_DEMO:-}
mkdir -p "$out"
case "$mode" in
  steady|burst|idle) ;;
  *) echo "run.sh: MODE '$mode': expected steady, burst or idle" >&2; exit 2 ;;
esac

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
        taskset -c "$server_cpu" "$demo" --port "$port" $demo_args >"$out/$name-$round.log" 2>&1 &
      ;;
    baseline)
      [ -n "$baseline" ] || { echo "skip"; return 1; }
      STALLWATCH_WATCHDOG=on STALLWATCH_METRICS_ADDR=off \
        taskset -c "$server_cpu" "$baseline" --port "$port" $demo_args >"$out/$name-$round.log" 2>&1 &
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

# One wrk run; prints "rps|p50|p99|errors|server CPU µs per request|server
# core busy|wrk CPU µs per request|wrk core busy". The last three say which
# side limits the rate: each is pinned to a core of its own, so the side
# whose core is busy all the run is the one the other waits for (a busy
# share is CPU time over the run's wall time).
measure() {  # port connections
  local port=$1 conns=$2 log cpu_before cpu_after start end
  log="$out/wrk-$name-$conns-$round.txt"
  cpu_before=$(server_cpu_ticks)
  start=$(date +%s.%N)
  # bash's `time` gives wrk's own user and system time (taskset execs it).
  { TIMEFORMAT='%U %S'; time taskset -c "$wrk_cpu" wrk -t1 -c"$conns" -d"$duration" --timeout 10s --latency \
      "http://127.0.0.1:$port/" >"$log" 2>&1 || true; } 2>"$log.cpu"
  end=$(date +%s.%N)
  cpu_after=$(server_cpu_ticks)
  python3 - "$log" "$((cpu_after - cpu_before))" "$(getconf CLK_TCK)" "$start" "$end" "$log.cpu" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
cpu_s = int(sys.argv[2]) / int(sys.argv[3])
wall_s = float(sys.argv[5]) - float(sys.argv[4])
wrk_s = sum(float(x) for x in open(sys.argv[6]).read().split()[-2:])
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
requests = int(done.group(1)) if done else 0
cpu_per_request = "%.2f" % (cpu_s * 1e6 / requests) if requests > 0 else "n/a"
wrk_per_request = "%.2f" % (wrk_s * 1e6 / requests) if requests > 0 else "n/a"
print("%s|%s|%s|%d|%s|%.2f|%s|%.2f" % ("%.0f" % float(rps.group(1)) if rps else "n/a", latency(50), latency(99),
                                       errors, cpu_per_request, cpu_s / wall_s, wrk_per_request, wrk_s / wall_s))
PY
}

# The kernel's TcpExt counter `name` (/proc/net/netstat).
tcp_ext() {
  awk -v want="$1" '/^TcpExt:/ { if (!seen) { split($0, names); seen = 1 } else { split($0, values);
    for (i in names) if (names[i] == want) print values[i] } }' /proc/net/netstat
}

# One burst against a server started a moment ago; prints "rps|p99 ms|
# timeouts|errors|ListenOverflows during the run|deepest accept queue|
# server CPU µs per request|accept queue last non-empty (s)".
measure_burst() {  # port
  local port=$1 log overflows_before overflows_after sampler cpu_before cpu_after
  log="$out/wrk-burst-$name-$round.txt"
  echo 0 >"$out/queue-$name-$round"
  echo 0 >"$out/queue-busy-$name-$round"
  # The deepest accept queue, and when it last held a connection (seconds
  # after wrk started): how long the burst took to be accepted.
  ( deepest=0 start=$(date +%s.%N)
    while :; do
      q=$(ss -Hltn "sport = :$port" 2>/dev/null | awk '{ if ($2 > m) m = $2 } END { print m + 0 }')
      if [ "$q" -gt "$deepest" ]; then deepest=$q; echo "$deepest" >"$out/queue-$name-$round"; fi
      if [ "$q" -gt 0 ]; then awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { printf "%.2f", n - s }' >"$out/queue-busy-$name-$round"; fi
      sleep 0.05
    done ) &
  sampler=$!
  overflows_before=$(tcp_ext ListenOverflows)
  cpu_before=$(server_cpu_ticks)
  taskset -c "$wrk_cpu" wrk -t1 -c"$burst_connections" -d"$duration" --timeout 10s --latency \
    "http://127.0.0.1:$port/" >"$log" 2>&1 || true
  cpu_after=$(server_cpu_ticks)
  overflows_after=$(tcp_ext ListenOverflows)
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  python3 - "$log" "$((overflows_after - overflows_before))" "$(cat "$out/queue-$name-$round")" \
    "$((cpu_after - cpu_before))" "$(getconf CLK_TCK)" "$(cat "$out/queue-busy-$name-$round")" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
done = re.search(r"(\d+) requests in", text)
cpu_s = int(sys.argv[4]) / int(sys.argv[5])
cpu_per_request = "%.1f" % (cpu_s * 1e6 / int(done.group(1))) if done and int(done.group(1)) > 0 else "n/a"
m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", text, re.M)
p99 = "n/a"
if m:
    v, unit = float(m.group(1)), m.group(2)
    p99 = "%.1f" % (v / 1000 if unit == "us" else v * 1000 if unit == "s" else v)
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
timeouts, errors = 0, 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    timeouts = int(m.group(4))
    errors = sum(int(x) for x in m.groups()[:3])
print("%s|%s|%d|%d|%s|%s|%s|%.1f" % ("%.0f" % float(rps.group(1)) if rps else "n/a", p99, timeouts, errors,
                                     sys.argv[2], sys.argv[3], cpu_per_request, float(sys.argv[6])))
PY
}

# Runs MEASURE NAME ROUND PORT against each server, started anew on a free
# port for each round; servers take turns within a round. After each demo
# round, says how many stalls its watchdog reported: a slow round with
# reports was the demo's own doing, one without was not.
each_fresh_server() {  # measure
  local round name port stalls
  for round in $(seq "$rounds"); do
    for name in $servers; do
      port=$(free_port)
      if ! start_server "$name" "$port" >/dev/null; then
        echo "run.sh: $name not available, skipped" >&2
        continue
      fi
      "$1" "$name" "$round" "$port"
      stop_server
      if [ "$name" = stallwatch ] && [ -f "$out/$name-$round.log" ]; then
        stalls=$(grep -c "^stallwatch: stall loop=" "$out/$name-$round.log" || true)
        echo "run.sh: round $round: the demo's watchdog reported $stalls stalls ($out/$name-$round.log)" >&2
      fi
    done
  done
}

demo_args=""
if [ "$mode" = idle ]; then
  demo_args="--header-timeout-ms 600000"
  : >"$out/idle.tsv"
  echo "run.sh: $idle_connections idle keep-alive connections per fresh server, load: $(uptime)" >&2
  measure_idle() {  # name round port
    sleep 0.5
    IFS='|' read -r before after opened < <(taskset -c "$wrk_cpu" python3 "$here/idle_connections.py" "$3" \
      "$idle_connections" "$server_pid" $(pgrep -P "$server_pid" || true))
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$before" "$after" "$opened" | tee -a "$out/idle.tsv"
  }
  each_fresh_server measure_idle
  echo "run.sh: done, load: $(uptime)" >&2
  python3 - "$out/idle.tsv" "$servers" >"$out/results.md" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("| server | RSS before | RSS with the connections open | connections open | per connection, median of rounds | rounds |")
print("|---|---:|---:|---:|---:|---:|")
for name in sys.argv[2].split():
    got = [r for r in rows if r[0] == name and int(r[4]) > 0]
    if not got:
        continue
    med = lambda i: statistics.median(float(r[i]) for r in got)
    per = statistics.median((float(r[3]) - float(r[2])) * 1024 / int(r[4]) for r in got)
    print("| %s | %.1f MiB | %.1f MiB | %d | %.2f KB | %d |" % (
        name, med(2) / 1024, med(3) / 1024, min(int(r[4]) for r in got), per / 1000, len(got)))
PY
  echo
  cat "$out/results.md"
  echo "(raw rounds in $out)"
  exit 0
fi

if [ "$mode" = burst ]; then
  : >"$out/burst.tsv"
  echo "run.sh: burst of $burst_connections connections for $duration against a fresh server, load: $(uptime)" >&2
  record_burst() {  # name round port
    IFS='|' read -r rps p99 timeouts errors overflows deepest cpu_us busy_s < <(measure_burst "$3")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$rps" "$p99" "$timeouts" "$errors" \
      "$overflows" "$deepest" "$cpu_us" "$busy_s" | tee -a "$out/burst.tsv"
  }
  each_fresh_server record_burst
  echo "run.sh: done, load: $(uptime)" >&2
  python3 - "$out/burst.tsv" "$servers" >"$out/results.md" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
worst = {}
print("| server | p99 per round | worst p99 | timeouts | other socket errors | ListenOverflows per round "
      "| deepest accept queue per round | accept queue last non-empty, s after start | requests/s per round "
      "| server CPU µs per request per round |")
print("|---|---|---:|---:|---:|---|---|---|---|---|")
for name in sys.argv[2].split():
    got = [r for r in rows if r[0] == name]
    if not got:
        continue
    p99s = [float(r[3]) for r in got if r[3] != "n/a"]
    worst[name] = max(p99s) if p99s else None
    print("| %s | %s | %s | %d | %d | %s | %s | %s | %s | %s |" % (
        name, ", ".join("%s ms" % r[3] for r in got), "%.0f ms" % worst[name] if worst[name] else "n/a",
        sum(int(r[4]) for r in got), sum(int(r[5]) for r in got), ", ".join(r[6] for r in got),
        ", ".join(r[7] for r in got), ", ".join(r[9] for r in got), ", ".join(r[2] for r in got),
        ", ".join(r[8] for r in got)))
if worst.get("nginx"):
    print()
    for name in worst:
        if name != "nginx" and worst[name]:
            print("%s worst p99 / nginx worst p99: %.2f" % (name, worst[name] / worst["nginx"]))
PY
  echo
  cat "$out/results.md"
  echo "(wrk logs and raw rounds in $out)"
  exit 0
fi

# Servers take turns within each round, so a burst of load from elsewhere on
# the machine hits them alike; the table shows the median of the rounds.
: >"$out/raw.tsv"
measure_steady() {  # name round port
  # Warm up (JITs, caches, accept queue) before measuring.
  taskset -c "$wrk_cpu" wrk -t1 -c100 -d2s "http://127.0.0.1:$3/" >/dev/null 2>&1 || true
  for conns in $connections; do
    IFS='|' read -r rps p50 p99 errors cpu_us busy wrk_us wrk_busy < <(measure "$3" "$conns")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$conns" "$rps" "$p50" "$p99" "$errors" "$cpu_us" \
      "$busy" "$wrk_us" "$wrk_busy" | tee -a "$out/raw.tsv"
  done
}
each_fresh_server measure_steady

python3 - "$out/raw.tsv" "$servers" "$connections" >"$out/results.md" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("| server | connections | requests/s | p50 | p99 | errors | server CPU per request | rounds "
      "| server core busy | wrk CPU per request | wrk core busy |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in sys.argv[2].split():
    for conns in sys.argv[3].split():
        got = [r for r in rows if r[0] == name and r[1] == conns and "n/a" not in r[2:5]]
        if not got:
            continue
        med = lambda i: statistics.median(float(r[i]) for r in got)
        cpu = [float(r[6]) for r in got if r[6] != "n/a"]
        wrk = [float(r[8]) for r in got if r[8] != "n/a"]
        print("| %s | %s | %.0f | %.2f ms | %.2f ms | %d | %s | %d | %.2f | %s | %.2f |" % (
            name, conns, med(2), med(3), med(4), sum(int(r[5]) for r in got),
            "%.2f µs" % statistics.median(cpu) if cpu else "n/a", len(got), med(7),
            "%.2f µs" % statistics.median(wrk) if wrk else "n/a", med(9)))

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
        cpu = [float(a[6]) / float(b[6]) for a, b in pairs if "n/a" not in (a[6], b[6])]
        lines.append("| %s | %s | %.2f | %d of %d | %.2f | %d of %d | %s |" % (
            other, conns, statistics.median(rps), sum(x >= 1 for x in rps), len(pairs),
            statistics.median(p99), sum(x <= 1 for x in p99), len(pairs),
            "%.2f" % statistics.median(cpu) if cpu else "n/a"))
if lines:
    print()
    print("| stallwatch against | connections | requests/s ratio, median of rounds | rounds with at least its requests/s "
          "| p99 ratio, median of rounds | rounds with p99 no worse | server CPU per request ratio, median of rounds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
PY

echo
cat "$out/results.md"
echo "(wrk logs and raw rounds in $out)"
