#!/bin/sh
# PostgreSQL streaming replica of $PRIMARY, cloned once. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${PRIMARY:=pg1}" "${REPL_PASSWORD:?}"
if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /etc/postgresql | sort -n | tail -1)
data=/var/lib/postgresql/$ver/main
etc=/etc/postgresql/$ver/main
if [ ! -f "$data/standby.signal" ]; then
    systemctl stop postgresql
    rm -rf "$data"
    slot=$(hostname | tr -c 'a-z0-9_\n' '_')
    # Kept: the standby's primary_conninfo reads the password from it on every reconnect.
    pass=/var/lib/postgresql/.pgpass
    printf '%s:5432:*:replicator:%s\n' "$PRIMARY" "$REPL_PASSWORD" > "$pass"
    chown postgres:postgres "$pass"; chmod 0600 "$pass"
    # The slot is created by pg_basebackup, or reused when it already exists on the primary.
    if ! runuser -u postgres -- env PGPASSFILE="$pass" pg_basebackup -h "$PRIMARY" -U replicator \
            -D "$data" -R -X stream -C -S "$slot" 2>/dev/null; then
        rm -rf "$data"
        runuser -u postgres -- env PGPASSFILE="$pass" pg_basebackup -h "$PRIMARY" -U replicator \
            -D "$data" -R -X stream -S "$slot"
    fi
    chmod 0700 "$data"
fi
conf="hot_standby = on"
if [ "$(cat "$etc/conf.d/replication.conf" 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" > "$etc/conf.d/replication.conf"
fi
systemctl enable --quiet postgresql
systemctl start postgresql
