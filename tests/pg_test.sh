#!/bin/sh
# Runs a test program inside a throwaway PostgreSQL cluster (pg_virtualenv,
# Debian's postgresql-common): it exports PGHOST, PGUSER, PGPASSWORD,
# PGDATABASE and PGVERSION, and drops the cluster when the program ends. -t
# keeps the cluster in a temporary directory and the port is a free one, so
# several runs (the plain and sanitizer builds) can each have their own.
#   tests/pg_test.sh PROGRAM [ARGS...]
set -eu
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
exec pg_virtualenv -t -c "-p $port" -- env PGPORT="$port" "$@"
