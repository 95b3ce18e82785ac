#!/usr/bin/env bash
# Install PostgreSQL from Debian packages if missing, start it, and create the test role.
# Prints the SQLAlchemy URL for MEADOWLARK_TEST_POSTGRES_URL on its last line.
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
  pg_createcluster "$version" main >&2
fi
pg_ctlcluster "$version" main start >&2 2>/dev/null || true
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 1
done
pg_isready -h 127.0.0.1 -p 5432 >&2
run_sql() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ "$(run_sql "SELECT 1 FROM pg_roles WHERE rolname = 'meadowlark'")" != "1" ]; then
  run_sql "CREATE ROLE meadowlark LOGIN CREATEDB PASSWORD 'meadowlark'" >&2
fi
if [ "$(run_sql "SELECT 1 FROM pg_database WHERE datname = 'meadowlark'")" != "1" ]; then
  run_sql "CREATE DATABASE meadowlark OWNER meadowlark" >&2
fi
echo "postgresql+psycopg://meadowlark:meadowlark@127.0.0.1:5432/meadowlark"
