# Sourced by bench/pg/run.sh and counts.sh, with their arguments
# (BUILD_DIR [SECONDS] [ROUNDS]) and default_seconds, default_rounds set:
# re-runs the script inside pg_virtualenv (a throwaway PostgreSQL 15), then,
# inside it, makes pgbench's tables (scale 1) and sets build, seconds,
# rounds, bench (the stallwatch-bench-pg binary), work (a temporary
# directory, removed at exit) and postmaster (the server's pid).
build=$(cd "$1" && pwd)
seconds=${2:-$default_seconds}
rounds=${3:-$default_rounds}
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${PGVERSION:-}" ]; then
  exec "$here/../../tests/pg_test.sh" "$0" "$build" "$seconds" "$rounds"
fi
bench="$build/bench/stallwatch-bench-pg"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export STALLWATCH_METRICS_ADDR=off
pgbench -i -q -s 1 >/dev/null 2>&1
postmaster=$(head -1 "$(psql -XAtc 'SHOW data_directory')/postmaster.pid")
