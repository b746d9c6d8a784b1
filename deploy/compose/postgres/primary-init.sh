#!/bin/sh
# Runs once, when the primary's data directory is created (the postgres
# image's /docker-entrypoint-initdb.d): the role the replica streams with.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$(cat /run/secrets/postgres_replication_password)" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SQL
# The image's pg_hba.conf allows `all` databases, which does not cover replication.
echo 'host replication replicator all scram-sha-256' >> "$PGDATA/pg_hba.conf"
