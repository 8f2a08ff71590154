#!/usr/bin/env bash
# Builds a release tree (build-bench, -Dbench=true) and runs every benchmark:
# stallwatch side by side with raw Boost.Context and Boost.Fiber. Prints the
# tables (Markdown) that docs/BENCHMARKS.md quotes; progress goes to stderr.
#
#   scripts/bench.sh            full run (a few minutes)
#   scripts/bench.sh --quick    small sizes: checks that every case runs
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-bench"

"$root/scripts/install-deps.sh" bench

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$root" --buildtype=release -Dbench=true -Dtests=false >&2
else
  meson configure "$build" --buildtype=release -Dbench=true -Dtests=false >&2
fi
# The machine is shared: one compile job at a time.
ninja -C "$build" -j1 \
  bench/stallwatch-bench bench/stallwatch-bench-context \
  bench/stallwatch-bench-fiber bench/stallwatch-bench-stallwatch \
  $(command -v go >/dev/null && echo bench/stallwatch-bench-go) >&2

echo "Commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "Command: scripts/bench.sh $*"
"$build/bench/stallwatch-bench" "$@"
