#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the plain build runs
# all suites; an ASan+UBSan build runs the unit suite again; a ThreadSanitizer
# build runs the watchdog, thread-pool and metrics tests. Ends with `N passed, N failed`.
#
#   scripts/test.sh            # everything
#   SUITES="unit" scripts/test.sh   # only some suites of the plain build
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test || exit 1

jobs=$(nproc)
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp}"

setup() {  # setup DIR [meson options...]
  local dir=$1
  shift
  [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null
}

build() {  # build DIR [TARGET...]: everything, or just the targets
  local dir=$1
  shift
  ninja -C "$dir" -j "$jobs" "$@" >"$dir.build.log" 2>&1 || { tail -50 "$dir.build.log"; return 1; }
}

build_for_suites() {  # build_for_suites DIR SUITE...: only what those tests run
  local dir=$1
  shift
  mapfile -t targets < <(python3 scripts/suite-targets.py "$dir" "$@")
  build "$dir" "${targets[@]}"
}

run_suites() {  # run_suites DIR SUITE...
  local dir=$1
  shift
  local args=()
  for suite in "$@"; do args+=(--suite "$suite"); done
  meson test -C "$dir" --no-rebuild --num-processes "$jobs" --print-errorlogs "${args[@]}" || true
}

dirs=()
status=0

if setup build && build build; then
  # shellcheck disable=SC2086
  run_suites build ${SUITES:-unit integration dashboards load}
  dirs+=(build)
else
  echo "test.sh: the plain build failed" >&2
  status=1
fi

if [ -z "${SUITES:-}" ]; then
  if setup build-asan -Db_sanitize=address,undefined -Db_lundef=false && build_for_suites build-asan unit; then
    run_suites build-asan unit
    dirs+=(build-asan)
  else
    echo "test.sh: the ASan+UBSan build failed" >&2
    status=1
  fi
  if setup build-tsan -Db_sanitize=thread -Db_lundef=false && build_for_suites build-tsan tsan; then
    run_suites build-tsan tsan
    dirs+=(build-tsan)
  else
    echo "test.sh: the ThreadSanitizer build failed" >&2
    status=1
  fi
fi

if [ ${#dirs[@]} -gt 0 ]; then
  python3 scripts/summarize-tests.py "${dirs[@]}" || status=1
else
  echo "0 passed, 1 failed"
fi
exit $status
