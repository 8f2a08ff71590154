#!/usr/bin/env bash
# One server, one wrk run, for looking into CPU per request: starts SERVER
# (a stallwatch-demo path, or "nginx") pinned to CPU 0, warms it up with
# wrk -c100 for 2 s, then runs wrk -t1 -cCONNECTIONS pinned to CPU 1 and
# prints one line: requests/s, the server's CPU per request split into user
# and system time (all its processes and threads), how busy each side kept
# its core (CPU time over wall time: the side near 1.00 limits the rate) and
# wrk's own CPU per request.
#
# With a command after the arguments, it runs during the measured run,
# attached to the server (nginx: its worker) for TOOL_SECONDS (5):
#   bench/http/one_run.sh build/examples/stallwatch-demo 10000 10s \
#     perf record -e cpu-clock -F 4000 -g -o /tmp/demo.data
#   bench/http/one_run.sh nginx 10000 10s perf stat -e task-clock,context-switches
# The command is called as `CMD... -p PID -- sleep TOOL_SECONDS`; its output
# goes to $OUT/tool.txt. The server's own output goes to $OUT/server.log.
#
# usage: bench/http/one_run.sh SERVER CONNECTIONS DURATION [COMMAND...]
# env:   OUT=$TMPDIR/stallwatch-one-run  TOOL_SECONDS=5  SERVER_CPU=0  WRK_CPU=1
set -euo pipefail
server=${1:?usage: one_run.sh SERVER CONNECTIONS DURATION [COMMAND...]}
conns=${2:?connections}
duration=${3:?duration, e.g. 10s}
shift 3
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-${TMPDIR:-/tmp}/stallwatch-one-run}
server_cpu=${SERVER_CPU:-0}
wrk_cpu=${WRK_CPU:-1}
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$server" = nginx ]; then
  mkdir -p "$out/nginx"
  sed -e "s|@PORT@|$port|" -e "s|@DIR@|$out/nginx|" "$here/nginx.conf.in" >"$out/nginx/nginx.conf"
  taskset -c "$server_cpu" nginx -e "$out/nginx/error.log" -p "$out/nginx" -c "$out/nginx/nginx.conf" \
    >"$out/server.log" 2>&1 &
else
  STALLWATCH_WATCHDOG=on STALLWATCH_METRICS_ADDR=off \
    taskset -c "$server_cpu" "$server" --port "$port" >"$out/server.log" 2>&1 &
fi
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null || true; wait $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
taskset -c "$wrk_cpu" wrk -t1 -c100 -d2s "http://127.0.0.1:$port/" >/dev/null 2>&1 || true

pids="$server_pid $(pgrep -P "$server_pid" || true)"
target=$server_pid
[ "$server" = nginx ] && target=$(pgrep -P "$server_pid" | head -1)
ticks() {  # user and system clock ticks of the server's processes, all threads
  local user=0 system=0 pid fields
  for pid in $pids; do
    read -ra fields <"/proc/$pid/stat"
    user=$((user + fields[13])) system=$((system + fields[14]))
  done
  echo "$user $system"
}

read -r user0 system0 < <(ticks)
start=$(date +%s.%N)
tool_pid=""
if [ $# -gt 0 ]; then
  ( sleep 0.2; "$@" -p "$target" -- sleep "${TOOL_SECONDS:-5}" >"$out/tool.txt" 2>&1 ) &
  tool_pid=$!
fi
{ TIMEFORMAT='%U %S'; time taskset -c "$wrk_cpu" wrk -t1 -c"$conns" -d"$duration" --timeout 10s --latency \
    "http://127.0.0.1:$port/" >"$out/wrk.txt" 2>&1 || true; } 2>"$out/wrk-cpu.txt"
end=$(date +%s.%N)
read -r user1 system1 < <(ticks)
[ -n "$tool_pid" ] && wait "$tool_pid"

python3 - "$out/wrk.txt" "$out/wrk-cpu.txt" "$((user1 - user0))" "$((system1 - system0))" \
  "$(getconf CLK_TCK)" "$start" "$end" "$(basename "$server")" "$conns" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
requests = int(re.search(r"(\d+) requests in", text).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
tck = int(sys.argv[5])
user, system = int(sys.argv[3]) / tck, int(sys.argv[4]) / tck
wall = float(sys.argv[7]) - float(sys.argv[6])
wrk = sum(float(x) for x in open(sys.argv[2]).read().split()[-2:])
us = lambda s: s * 1e6 / requests
print("%s c=%s requests/s=%.0f server_us/req=%.2f (user %.2f, system %.2f) server_core_busy=%.2f "
      "wrk_us/req=%.2f wrk_core_busy=%.2f p99=%s" % (
          sys.argv[8], sys.argv[9], rps, us(user + system), us(user), us(system), (user + system) / wall,
          us(wrk), wrk / wall, p99.group(1) if p99 else "n/a"))
PY
[ $# -gt 0 ] && echo "($1 output: $out/tool.txt)"
exit 0
