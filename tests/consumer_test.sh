#!/usr/bin/env bash
# Packaging: install into a scratch root, then build and run a program outside
# the tree with nothing but `pkg-config --cflags --libs stallwatch`.
set -euo pipefail
build_dir=$1
source_dir=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

meson install -C "$build_dir" --destdir "$root" --no-rebuild --quiet
pc=$(find "$root" -name stallwatch.pc | head -1)
[ -n "$pc" ] || { echo "stallwatch.pc was not installed" >&2; exit 1; }
find "$root" -path '*include/stallwatch/stallwatch.hpp' | grep -q . || { echo "headers not installed" >&2; exit 1; }

export PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR=$root
flags=$(pkg-config --cflags --libs stallwatch)
# A consumer's large frames probe every page, so a fiber's guard page stops them (docs/STACKS.md).
grep -qw -- -fstack-clash-protection <<<"$(pkg-config --cflags stallwatch)" ||
  { echo "stallwatch.pc's Cflags lack -fstack-clash-protection" >&2; exit 1; }
g++ -std=c++20 "$source_dir/examples/cooperate.cpp" $flags -o "$root/consumer"
libdir=$(dirname "$(find "$root" -name 'libstallwatch.so' | head -1)")
output=$(STALLWATCH_METRICS_ADDR=off LD_LIBRARY_PATH=$libdir "$root/consumer")
echo "$output"
grep -q "sum=5050 collect=3" <<<"$output"
grep -q "tick 3" <<<"$output"

# The clients are libraries of their own, each with its own stallwatch-*.pc:
# libstallwatch.so links neither libcurl nor libpq.
if readelf -d "$libdir/libstallwatch.so" | grep NEEDED | grep -E 'libcurl|libpq'; then
  echo "libstallwatch.so links a client's library" >&2; exit 1
fi
if [ -n "$(find "$root" -name stallwatch-pg.pc)" ]; then
  g++ -std=c++20 "$source_dir/examples/pg_example.cpp" $(pkg-config --cflags --libs stallwatch-pg) -o "$root/pg_consumer"
fi
if [ -n "$(find "$root" -name stallwatch-curl.pc)" ]; then
  # A request to a port nothing listens on: the client's error, from the installed library.
  cat >"$root/curl_consumer.cpp" <<'EOF'
#include <stallwatch/http.hpp>
#include <stallwatch/stallwatch.hpp>
#include <chrono>
#include <cstdio>
int main() {
  return stallwatch::run([] {
    try {
      stallwatch::http::get("http://127.0.0.1:1/", stallwatch::deadline_after(std::chrono::seconds(5)));
    } catch (const stallwatch::http::error& e) {
      std::printf("http error: %s\n", e.what());
      return 0;
    }
    return 1;
  });
}
EOF
  g++ -std=c++20 "$root/curl_consumer.cpp" $(pkg-config --cflags --libs stallwatch-curl) -o "$root/curl_consumer"
  STALLWATCH_METRICS_ADDR=off LD_LIBRARY_PATH=$libdir "$root/curl_consumer"
fi
