#!/usr/bin/env bash
# Builds bench/before_after.cpp against an older commit's library and this
# tree's (both release builds), then runs the two in turns, N rounds: the
# cost of a change to the loop-bound primitives or the switch, on a shared
# machine where only interleaved runs compare.
#
#   scripts/bench-before-after.sh <commit> [rounds]     (default 5 rounds)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base_commit="${1:?usage: scripts/bench-before-after.sh <commit> [rounds]}"
rounds="${2:-5}"
work="${TMPDIR:-/tmp}/stallwatch-before-after"
base_src="$work/src-$base_commit"
base_build="$work/build-$base_commit"
this_build="$root/build-bench"

"$root/scripts/install-deps.sh" bench
mkdir -p "$work"
if [ ! -d "$base_src" ]; then
  mkdir -p "$base_src"
  git -C "$root" archive "$base_commit" | tar -x -C "$base_src"
fi
[ -f "$base_build/build.ninja" ] ||
  meson setup "$base_build" "$base_src" --buildtype=release -Dtests=false -Dbench=false -Ddemo=disabled >&2
ninja -C "$base_build" -j1 >&2
[ -f "$this_build/build.ninja" ] ||
  meson setup "$this_build" "$root" --buildtype=release -Dbench=true -Dtests=false >&2
ninja -C "$this_build" -j1 bench/stallwatch-bench-stallwatch >&2  # the library, and a bench that uses it

build_against() {  # build_against SRC BUILD OUT
  g++ -std=c++20 -O2 -I "$1/include" "$root/bench/before_after.cpp" -o "$3" \
    -L "$2/src" -lstallwatch -Wl,-rpath,"$2/src"
}
build_against "$base_src" "$base_build" "$work/before"
build_against "$root" "$this_build" "$work/after"

echo "Before: $base_commit; after: $(git -C "$root" rev-parse --short HEAD); $rounds rounds, in turns"
for ((i = 1; i <= rounds; ++i)); do
  echo "before: $(STALLWATCH_METRICS_ADDR=off "$work/before")"
  echo "after:  $(STALLWATCH_METRICS_ADDR=off "$work/after")"
done
