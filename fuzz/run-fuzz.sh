#!/usr/bin/env bash
# Builds the request-handling fuzzer with Debian's clang (libFuzzer + ASan +
# UBSan) and runs it for a bounded time. Exit 0: no crash found; 77: clang
# or libhttp-parser-dev missing (meson reports a skip).
#
# usage: fuzz/run-fuzz.sh [seconds=60] [build-dir=$TMPDIR/stallwatch-fuzz]
set -euo pipefail
seconds=${1:-60}
out=${2:-${TMPDIR:-/tmp}/stallwatch-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")

cxx=$(command -v clang++ || command -v clang++-14 || true)
if [ -z "$cxx" ] || [ ! -f /usr/include/http_parser.h ]; then
  echo "run-fuzz.sh: needs clang and libhttp-parser-dev; skipping" >&2
  exit 77
fi

mkdir -p "$out/corpus"
"$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$src/examples/demo" "$here/http_request_fuzz.cpp" "$src/examples/demo/http.cpp" \
  -lhttp_parser -o "$out/http_request_fuzz"

# New inputs go to the scratch corpus; the checked-in seeds stay as they are.
cd "$out"
./http_request_fuzz -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
  corpus "$here/corpus"
