#!/usr/bin/env bash
# C10K: 10,000 concurrent keep-alive connections against one demo loop for
# 60 s, zero errors allowed. Needs `ulimit -n` of at least ~10,100 for each
# process (this machine's hard limit is 20,000). The client runs without a
# watchdog: its own stalls are not what is tested; the demo keeps its watchdog on.
#
# usage: c10k.sh path/to/stallwatch-demo path/to/c10k_client [connections] [seconds]
set -euo pipefail
demo=$1
client=$2
connections=${3:-10000}
seconds=${4:-60}

ulimit -n "$(ulimit -Hn)"
need=$((connections + 100))
if [ "$(ulimit -n)" -lt "$need" ]; then
  echo "c10k.sh: ulimit -n is $(ulimit -n), need $need" >&2
  exit 1
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
trap 'kill "$demo_pid" 2>/dev/null || true; rm -f "$log"' EXIT
STALLWATCH_METRICS_ADDR=off "$demo" --port "$port" --threads 1 >"$log" 2>&1 &
demo_pid=$!
for _ in $(seq 100); do
  grep -q listening "$log" && break
  sleep 0.1
done
grep -q listening "$log" || { echo "c10k.sh: the demo did not start"; cat "$log"; exit 1; }

rc=0
STALLWATCH_METRICS_ADDR=off STALLWATCH_WATCHDOG=off "$client" --port "$port" --connections "$connections" --seconds "$seconds" || rc=$?

kill -TERM "$demo_pid"
demo_rc=0
wait "$demo_pid" || demo_rc=$?
echo "c10k.sh: client exit $rc, demo exit $demo_rc"
grep -E "stall|error" "$log" | head -20 || true
[ "$rc" -eq 0 ] && [ "$demo_rc" -eq 0 ]
