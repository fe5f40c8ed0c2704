#!/usr/bin/env bash
# Starts a private PostgreSQL server for the tests (installing PostgreSQL from Debian's packages if the
# machine has none) and prints its URL. The cluster lives in .tern/postgres, listens on loopback only,
# and trusts local connections: it is for tests, never for data. Idempotent: a running cluster is reused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD/.tern/postgres"

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(bindir)" ]; then
  echo "installing PostgreSQL (apt-get)..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
fi
BIN="$(bindir)"

# PostgreSQL refuses to run as root: run it as the postgres user the package creates.
if [ "$(id -u)" = 0 ]; then
  AS=(runuser -u postgres --)
else
  AS=()
fi

mkdir -p "$ROOT"
[ "$(id -u)" = 0 ] && chown postgres "$ROOT"
# The port: as asked, else the one this cluster used before, else a free one.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT="${TERN_TEST_POSTGRES_PORT:-$(cat "$ROOT/port" 2>/dev/null || echo 55432)}"
if ! "${AS[@]}" "$BIN/pg_ctl" -D "$ROOT/data" status >/dev/null 2>&1; then
  while port_busy "$PORT"; do PORT=$((PORT + 1)); done
fi
echo "$PORT" > "$ROOT/port"

if [ ! -f "$ROOT/data/PG_VERSION" ]; then
  "${AS[@]}" "$BIN/initdb" -D "$ROOT/data" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! "${AS[@]}" "$BIN/pg_ctl" -D "$ROOT/data" status >/dev/null 2>&1; then
  "${AS[@]}" "$BIN/pg_ctl" -D "$ROOT/data" -l "$ROOT/server.log" -w \
    -o "-p $PORT -k $ROOT -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$PORT/postgres"
