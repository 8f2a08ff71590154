#!/usr/bin/env bash
# The HTTP client benchmark: one stallwatch loop with 100 fibers doing
# keep-alive GETs of a 5-byte body from nginx (1 worker, `return 200`),
# side by side with a plain C curl-multi program (libcurl's ceiling), Go's
# net/http (GOMAXPROCS=1, 100 goroutines) and wrk -t1 -c100 (the machine's
# ceiling). nginx is pinned to CPU 0, every client to CPU 1 (taskset). The
# clients run in turn, round after round (interleaved), so drift in the
# machine's load touches all alike; the table gives each one's median
# requests per second and the ratios. Each run's figures leave out a first
# warm-up second (start-up: stallwatch's symbolizer warm-up thread, Go's
# runtime), so CPU per request is the steady state's. Then memory per
# in-flight request: each client's peak RSS at 1,000 requests in flight less
# that at 100, over 900.
#
# usage: bench/http_client/run.sh BUILD_DIR    (a build with -Dbench=true)
# env:   DURATION=10  ROUNDS=5  SERVER_CPU=0  CLIENT_CPU=1  OUT=$TMPDIR/stallwatch-http-client-bench
set -euo pipefail
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
duration=${DURATION:-10}
rounds=${ROUNDS:-5}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
out=${OUT:-${TMPDIR:-/tmp}/stallwatch-http-client-bench}
bin=$build/bench/http_client
mkdir -p "$out/nginx"
for tool in wrk taskset nginx; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$out/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $out/nginx/nginx.pid;
error_log $out/nginx/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $out/nginx/body;
  proxy_temp_path $out/nginx/proxy;
  fastcgi_temp_path $out/nginx/fastcgi;
  uwsgi_temp_path $out/nginx/uwsgi;
  scgi_temp_path $out/nginx/scgi;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { default_type text/plain; return 200 "hello"; }
  }
}
CONF
taskset -c "$server_cpu" nginx -p "$out/nginx" -c "$out/nginx/nginx.conf" &
nginx_pid=$!
trap 'kill -QUIT $nginx_pid 2>/dev/null; wait $nginx_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
url=http://127.0.0.1:$port/

# run CLIENT CONCURRENCY SECONDS → "rps maxrss_kib cpu_us_per_request"
run() {
  local line
  case "$1" in
    stallwatch) line=$(STALLWATCH_METRICS_ADDR=off taskset -c "$client_cpu" "$bin/stallwatch-bench-http-client" "$url" "$2" "$3" 2>>"$out/stallwatch-stderr.log") ;;
    curl-multi) line=$(taskset -c "$client_cpu" "$bin/stallwatch-bench-http-curl-multi" "$url" "$2" "$3") ;;
    go) line=$(GOMAXPROCS=1 taskset -c "$client_cpu" "$bin/stallwatch-bench-http-go" "$url" "$2" "$3") ;;
    wrk)
      local rps
      rps=$(taskset -c "$client_cpu" wrk -t1 -c"$2" -d"${3}s" "$url" | awk '/^Requests\/sec:/ {print $2}')
      echo "${rps%.*} 0 0"
      return
      ;;
  esac
  echo "$line" | sed -E 's/.*rps=([0-9]+) maxrss_kib=([0-9]+) cpu_us_per_request=([0-9.]+).*/\1 \2 \3/'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

clients="stallwatch curl-multi go wrk"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$rounds"); do
  for c in $clients; do
    read -r rps rss cpu < <(run "$c" 100 "$duration")
    echo "$c $rps $cpu" >> "$out/rps-$$.txt"
    echo "round $round $c: $rps requests/s, $cpu us CPU per request" >&2
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Per round, stallwatch's requests/s over each other client's (the pairs
# share the round's machine load); the median of those ratios.
declare -A med cpu_med
for c in $clients; do
  med[$c]=$(awk -v c="$c" '$1 == c {print $2}' "$out/rps-$$.txt" | median)
  cpu_med[$c]=$(awk -v c="$c" '$1 == c {print $3 * 10}' "$out/rps-$$.txt" | median)
done
echo "| client (100 in flight) | median requests/s | all rounds | stallwatch ÷ this, median of per-round ratios | median CPU per request (µs) |"
echo "|---|---|---|---|---|"
for c in $clients; do
  all=$(awk -v c="$c" '$1 == c {printf "%s%s", sep, $2; sep=", "}' "$out/rps-$$.txt")
  ratio=$(awk -v c="$c" '$1 == "stallwatch" {s[++i] = $2} $1 == c {o[++j] = $2} END {for (k = 1; k <= i; ++k) print s[k] / o[k]}' \
            "$out/rps-$$.txt" | sort -g | awk '{a[NR]=$1} END {printf "%.2f", (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
  cpu=$(awk -v v="${cpu_med[$c]}" 'BEGIN {print (v == 0) ? "—" : sprintf("%.1f", v / 10)}')
  echo "| $c | ${med[$c]} | $all | $ratio | $cpu |"
done

echo
echo "| client | peak RSS, 100 in flight (KiB) | peak RSS, 1,000 in flight (KiB) | per in-flight request (KiB) |"
echo "|---|---|---|---|"
for c in stallwatch curl-multi go; do
  read -r _ small _ < <(run "$c" 100 3)
  read -r _ large _ < <(run "$c" 1000 3)
  per=$(awk -v a="$small" -v b="$large" 'BEGIN {printf "%.1f", (b - a) / 900}')
  echo "| $c | $small | $large | $per |"
done
rm -f "$out/rps-$$.txt"
