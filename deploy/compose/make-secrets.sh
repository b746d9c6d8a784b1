#!/bin/sh
# Creates the secret files the compose files read (one value per file, the
# Docker secrets convention; the app reads them through its *_FILE variables).
# Run once, from anywhere: files that exist are kept, so a rerun never
# changes a password a database was initialised with.
#
#   deploy/compose/make-secrets.sh [directory]     (default: deploy/compose/secrets)
#
# Hex values: they go into URLs and config files without any escaping.
set -eu
dir="${1:-$(dirname "$0")/secrets}"
mkdir -p "$dir"
chmod 700 "$dir"
# Files 0644 in a 0700 directory: compose (without swarm) bind-mounts each
# secret with its host mode, and the containers read them as their own
# non-root users (llmchat 10001, postgres, redis); the directory keeps other
# host users out.
random() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }
keep_or_make() { [ -s "$dir/$1" ] || { random > "$dir/$1"; chmod 644 "$dir/$1"; }; }

keep_or_make postgres_password
keep_or_make postgres_replication_password
keep_or_make redis_password
keep_or_make jwt_secret
keep_or_make secrets_key
keep_or_make admin_password

pg="$(cat "$dir/postgres_password")"
redis="$(cat "$dir/redis_password")"
# The quickstart's single PostgreSQL; production's primary and replica.
printf 'postgres://llmchat:%s@postgres:5432/llmchat\n' "$pg" > "$dir/quickstart_database_url"
printf 'postgres://llmchat:%s@postgres-primary:5432/llmchat\n' "$pg" > "$dir/database_url"
printf 'postgres://llmchat:%s@postgres-replica:5432/llmchat\n' "$pg" > "$dir/database_read_url"
printf 'redis-sentinel://:%s@sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/llmchat\n' "$redis" > "$dir/redis_url"
chmod 644 "$dir/quickstart_database_url" "$dir/database_url" "$dir/database_read_url" "$dir/redis_url"
echo "secrets in $dir (the first admin is 'admin', password in $dir/admin_password)"
