#!/bin/sh
# Redis with a password; a replica of $PRIMARY when ROLE=replica. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${ROLE:=primary}" "${PRIMARY:=redis1}" "${PASSWORD:?}"
if ! dpkg-query -W -f='${Status}' redis-server 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq redis-server >/dev/null
fi
conf=/etc/redis/redis.conf
marker="# redis-sentinel recipe"
# Written once: after a failover Redis rewrites its own replicaof lines.
if ! grep -qxF "$marker" "$conf"; then
    sed -i -e 's/^bind .*/bind 0.0.0.0 ::/' -e 's/^protected-mode .*/protected-mode no/' "$conf"
    {
        echo "$marker"
        echo "requirepass $PASSWORD"
        echo "masterauth $PASSWORD"
        if [ "$ROLE" = replica ]; then
            echo "replicaof $(getent ahostsv4 "$PRIMARY" | awk 'NR==1 {print $1}') 6379"
        fi
    } >> "$conf"
    systemctl restart redis-server
fi
systemctl enable --quiet --now redis-server
