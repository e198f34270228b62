#!/bin/sh
# PostgreSQL primary accepting streaming replicas. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${REPL_PASSWORD:?}" "${ALLOW:=10.0.0.0/8}"
if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /etc/postgresql | sort -n | tail -1)
etc=/etc/postgresql/$ver/main
conf="listen_addresses = '*'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on"
hba="host replication replicator $ALLOW scram-sha-256"
restart=no
if [ "$(cat "$etc/conf.d/replication.conf" 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" > "$etc/conf.d/replication.conf"
    restart=yes
fi
if ! grep -qxF "$hba" "$etc/pg_hba.conf"; then
    printf '%s\n' "$hba" >> "$etc/pg_hba.conf"
    restart=yes
fi
systemctl enable --quiet --now postgresql
[ "$restart" = yes ] && systemctl restart postgresql
for i in $(seq 1 50); do runuser -u postgres -- pg_isready -q && break; sleep 0.2; done
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -v pw="$REPL_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE replicator WITH REPLICATION LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') \gexec
ALTER ROLE replicator WITH PASSWORD :'pw';
SQL
