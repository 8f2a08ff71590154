#!/usr/bin/env bash
# The main job: installs what is missing, builds, starts stallwatch-demo and
# drives it so a CPU stall and a blocking stall are caught and printed with
# their stacks; then the demo keeps serving until Ctrl-C (under CI=true it
# stops by itself).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh demo
if [ ! -f build/build.ninja ]; then
  meson setup build >/dev/null
fi
ninja -C build examples/stallwatch-demo >/dev/null
exec scripts/demo-drive.sh build/examples/stallwatch-demo "$@"
