#!/usr/bin/env bash
# Installs the Debian 12 packages stallwatch needs that are not installed yet.
# Idempotent: does nothing (and needs no root) when everything is present.
set -euo pipefail

PACKAGES=(
  build-essential meson ninja-build pkgconf python3
  libboost-context-dev libunwind-dev libdw-dev prometheus-cpp-dev doctest-dev
  systemtap-sdt-dev
  libhttp-parser-dev
)

# Extra packages for the groups asked for on the command line.
# test: what the test suite drives for real (Prometheus, bpftrace, load tools),
# the real libraries run on a loop by tests/probes/real_waits.cpp, and libc's
# separate debug info (tests/symbolizer_test.cpp reads it), and the unmodified
# programs tests/watch_test.py watches (redis-server, a libevent program, Node.js).
TEST_PACKAGES=(
  prometheus
  bpftrace
  clang
  curl
  libcurl4-openssl-dev
  libssl-dev  # the HTTP client parses the system CA store off the loop (src/http/system_ca_openssl.cpp)
  libsqlite3-dev
  libc6-dbg
  nginx-light
  openssl
  # the PostgreSQL client's tests run against a throwaway server (pg_virtualenv)
  libpq-dev postgresql postgresql-common
  redis-server redis-tools libevent-dev nodejs
)
# demo: what scripts/demo-drive.sh uses to send its requests.
DEMO_PACKAGES=(
  curl
)
# bench: Boost.Fiber and Go (the cross-thread channel comparison), the HTTP servers and load.
BENCH_PACKAGES=(
  libbenchmark-dev libboost-fiber-dev
  wrk nginx-light nodejs
  golang-go
)

wanted=("${PACKAGES[@]}")
for group in "$@"; do
  case "$group" in
    test) wanted+=("${TEST_PACKAGES[@]}") ;;
    demo) wanted+=("${DEMO_PACKAGES[@]}") ;;
    bench) wanted+=("${BENCH_PACKAGES[@]}") ;;
    *) echo "install-deps.sh: unknown group '$group' (accepted: test, demo, bench)" >&2; exit 2 ;;
  esac
done

missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps.sh: installing ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
