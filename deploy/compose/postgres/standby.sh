#!/bin/sh
# The streaming standby: cloned from the primary on first start (pg_basebackup -R writes its
# primary_conninfo), then a hot standby named pg_standby, the name the primary's
# synchronous_standby_names waits for.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    PGPASSWORD=$(cat /run/secrets/pg_replication_password) \
        pg_basebackup --host pg-primary --username replicator --pgdata "$PGDATA" \
        --wal-method stream --write-recovery-conf --checkpoint fast
    chmod 0700 "$PGDATA"
fi
exec postgres -c cluster_name=pg_standby -c hot_standby=on
