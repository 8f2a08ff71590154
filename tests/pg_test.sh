#!/bin/sh
# Runs a test program inside a throwaway PostgreSQL cluster (pg_virtualenv,
# Debian's postgresql-common): it exports PGHOST, PGUSER, PGPASSWORD,
# PGDATABASE and PGVERSION, and drops the cluster when the program ends.
# Several runs may overlap (the plain and sanitizer builds, meson's parallel
# tests): -t keeps each cluster in a temporary directory, the port is a free
# one, and the extra PID file Debian writes for every cluster named 15/regress
# (/var/run/postgresql/15-regress.pid, which pg_ctlcluster reads to stop or
# restart one) moves into a directory of the run's own.
#   tests/pg_test.sh PROGRAM [ARGS...]
set -eu
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
piddir=$(mktemp -d)
chmod 777 "$piddir"
trap 'rm -rf "$piddir"' EXIT
status=0
pg_virtualenv -t -c "-p $port" -o "external_pid_file=$piddir/postmaster.pid" -- env PGPORT="$port" "$@" || status=$?
exit "$status"
