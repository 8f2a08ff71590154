#!/usr/bin/env bash
# Starts stallwatch-demo, drives it into one CPU stall and one blocking
# stall so the watchdog prints both with their stacks, shows where the
# metrics are, and leaves the demo serving until Ctrl-C. With CI=true it
# stops the demo by itself after the requests and exits with its status.
#
# usage: scripts/demo-drive.sh [path/to/stallwatch-demo]
# env:   PORT=8080  STALLWATCH_METRICS_ADDR=127.0.0.1:9464  BUILD_DIR=build
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
demo=${1:-${BUILD_DIR:-$root/build}/examples/stallwatch-demo}
port=${PORT:-8080}
export STALLWATCH_METRICS_ADDR=${STALLWATCH_METRICS_ADDR:-127.0.0.1:9464}

if [ ! -x "$demo" ]; then
  echo "demo-drive.sh: $demo not found; build first: meson setup build && ninja -C build" >&2
  exit 1
fi

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }

get() {  # path: prints the body, using curl or bash's /dev/tcp
  if command -v curl >/dev/null; then
    curl -sS --max-time 30 "http://127.0.0.1:$port$1"
  else
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET %s HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n' "$1" >&3
    sed '1,/^\r$/d' <&3
    exec 3<&-
  fi
}

"$demo" --port "$port" &
demo_pid=$!
stop_demo() {
  kill -TERM "$demo_pid" 2>/dev/null || true
  wait "$demo_pid"
}
trap 'kill -TERM "$demo_pid" 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$demo_pid" 2>/dev/null || { echo "demo-drive.sh: the demo exited (port $port in use?)" >&2; exit 1; }
  sleep 0.1
done

say "GET /cpu?ms=300: a busy loop on the loop thread. Expect an 'on-cpu' stall report naming demo::busy_compute at endpoints.cpp"
get "/cpu?ms=300"
sleep 0.5
say "GET /block?ms=300: usleep on the loop thread. Expect 'blocked in clock_nanosleep' naming demo::blocking_sleep"
get "/block?ms=300"
sleep 0.5
say "GET /sleep?ms=300 and /offload?ms=300: the same waits done cooperatively. No report"
get "/sleep?ms=300"
get "/offload?ms=300"
sleep 0.5

if [ "$STALLWATCH_METRICS_ADDR" != off ]; then
  say "Metrics: http://$STALLWATCH_METRICS_ADDR/metrics (stall counters below)"
  if command -v curl >/dev/null; then
    curl -sS --max-time 5 "http://$STALLWATCH_METRICS_ADDR/metrics" | grep -E '^stallwatch_(stalls_total|stall_reports_total)' || true
  fi
fi

if [ "${CI:-}" = true ]; then
  say "CI=true: stopping the demo"
  trap - EXIT
  stop_demo
  exit $?
fi

say "The demo keeps serving on http://127.0.0.1:$port (try /cpu?ms=500, /process?ms=500). Ctrl-C to stop."
trap - EXIT
trap 'stop_demo; exit $?' INT TERM
wait "$demo_pid"
