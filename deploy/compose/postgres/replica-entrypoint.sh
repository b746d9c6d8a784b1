#!/bin/sh
# The streaming replica: on first start, a base backup of the primary
# (pg_basebackup -R writes standby.signal and the connection settings), then
# the image's own entrypoint, which finds the data directory and starts
# PostgreSQL as a hot standby. Failing over to it is by hand:
# `docker-compose exec postgres-replica gosu postgres pg_ctl promote`, then
# point the database_url secret at it (docs: ops/patroni for automatic failover).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  until pg_isready -h postgres-primary -p 5432 -q; do sleep 1; done
  PGPASSWORD="$(cat /run/secrets/postgres_replication_password)" \
    gosu postgres pg_basebackup -h postgres-primary -U replicator -D "$PGDATA" -X stream -R
fi
exec docker-entrypoint.sh postgres
