#!/usr/bin/env bash
# Run the test suite against a real PostgreSQL: start a throwaway cluster, run pytest, remove the cluster.
#
#   scripts/test_postgres.sh                   # the whole suite
#   scripts/test_postgres.sh -q tests/test_x.py  # arguments go to pytest
#   scripts/test_postgres.sh --shell           # only start the cluster, print its URL, wait for Ctrl-C
#
# Needs the PostgreSQL server programs (Debian/Ubuntu: apt-get install postgresql; they live in
# /usr/lib/postgresql/*/bin, or set PG_BIN) and psycopg (pip install -e '.[test,postgres]').
# The cluster lives in a temporary folder, listens on 127.0.0.1 on a free port with trust
# authentication, and is stopped and deleted on exit, whatever happens. PostgreSQL refuses to run
# as root: run as root, the cluster runs as the `postgres` user (or $PG_USER).
# PYTHON picks the interpreter (default: .venv/bin/python if there is one, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test_postgres.sh: $*" >&2; exit 1; }

if [[ -z "${PG_BIN:-}" ]]; then
    if command -v initdb >/dev/null 2>&1; then
        PG_BIN="$(dirname "$(readlink -f "$(command -v initdb)")")"
    else
        PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    fi
fi
[[ -n "$PG_BIN" && -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/createdb" ]] \
    || fail "PostgreSQL server programs not found (apt-get install postgresql, or set PG_BIN to the folder with initdb and pg_ctl)"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -c "import psycopg" 2>/dev/null \
    || fail "$PYTHON has no psycopg: pip install -e '.[test,postgres]'"

# The cluster's processes run as an unprivileged user: PostgreSQL will not start as root.
as_pg() { "$@"; }
if [[ "$(id -u)" == 0 ]]; then
    PG_USER="${PG_USER:-postgres}"
    id "$PG_USER" >/dev/null 2>&1 || fail "user $PG_USER does not exist (PostgreSQL cannot run as root; set PG_USER)"
    as_pg() { runuser -u "$PG_USER" -- "$@"; }
fi

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
CLUSTER="$(mktemp -d "${TMPDIR:-/tmp}/privacy-tracker-pg.XXXXXX")"
chmod 0755 "$CLUSTER"   # the postgres user must reach its folder; the data folder inside is its own (0700)
if [[ "$(id -u)" == 0 ]]; then chown "$PG_USER" "$CLUSTER"; fi

stop_cluster() {
    local status=$?
    if [[ -f "$CLUSTER/data/postmaster.pid" ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$CLUSTER"
    exit "$status"
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "PostgreSQL: $("$PG_BIN/postgres" --version), cluster in $CLUSTER, port $PORT"
if ! as_pg "$PG_BIN/initdb" -D "$CLUSTER/data" -U tracker -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
        >"$CLUSTER/initdb.log" 2>&1; then
    cat "$CLUSTER/initdb.log" >&2
    fail "initdb failed (output above)"
fi
# A throwaway cluster: durability is not wanted, speed is. Each test opens its own database,
# and tests that start several processes open several connections each.
cat >>"$CLUSTER/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$CLUSTER'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
# Every role is trusted except this one, which must give its password: the tests of a wrong
# password and of a password from PGPASSWORD log in as it (tests/test_database.py).
{ echo "host all tracker_password_test 127.0.0.1/32 scram-sha-256"; cat "$CLUSTER/data/pg_hba.conf"; } \
    >"$CLUSTER/pg_hba.conf" && cat "$CLUSTER/pg_hba.conf" >"$CLUSTER/data/pg_hba.conf"
if ! as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER/data" -l "$CLUSTER/server.log" -w -t 60 start >/dev/null; then
    cat "$CLUSTER/server.log" >&2 || true
    fail "the PostgreSQL server did not start (its log is above)"
fi
as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U tracker tracker_test \
    || { cat "$CLUSTER/server.log" >&2; fail "createdb failed"; }

export PRIVACY_TRACKER_TEST_DATABASE_URL="postgresql+psycopg://tracker@127.0.0.1:$PORT/tracker_test"
echo "PRIVACY_TRACKER_TEST_DATABASE_URL=$PRIVACY_TRACKER_TEST_DATABASE_URL"

if [[ "${1:-}" == "--shell" ]]; then
    echo "The cluster runs until Ctrl-C."
    while true; do sleep 3600 & wait $!; done   # wait: the traps run at once on Ctrl-C or TERM
fi

status=0
"$PYTHON" -m pytest "$@" || status=$?
if [[ $status != 0 && $status != 5 ]]; then
    echo "--- the last lines of the PostgreSQL server log ---" >&2
    tail -n 40 "$CLUSTER/server.log" >&2 || true
fi
exit "$status"
