#!/bin/sh
# Run once by the postgres image when the primary's data directory is created: the standby's
# replication role (its password from the pg_replication_password secret) and its pg_hba line.
set -eu
password=$(cat /run/secrets/pg_replication_password)
psql -v ON_ERROR_STOP=1 -v password="$password" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
