#!/bin/sh
# Redis Sentinel monitoring $PRIMARY as $MASTER_NAME. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${PRIMARY:=redis1}" "${MASTER_NAME:=mymaster}" "${QUORUM:=2}" "${PASSWORD:?}"
if ! dpkg-query -W -f='${Status}' redis-sentinel 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq redis-sentinel >/dev/null
fi
conf=/etc/redis/sentinel.conf
marker="# redis-sentinel recipe"
# Written once: Sentinel rewrites this file with what it learns.
if ! grep -qxF "$marker" "$conf"; then
    addr=$(getent ahostsv4 "$PRIMARY" | awk 'NR==1 {print $1}')
    sed -i -e 's/^bind .*/bind 0.0.0.0 ::/' -e 's/^protected-mode .*/protected-mode no/' \
        -e '/^sentinel monitor /d' -e '/^sentinel down-after-milliseconds /d' \
        -e '/^sentinel failover-timeout /d' -e '/^sentinel auth-pass /d' "$conf"
    {
        echo "$marker"
        echo "sentinel monitor $MASTER_NAME $addr 6379 $QUORUM"
        echo "sentinel auth-pass $MASTER_NAME $PASSWORD"
        echo "sentinel down-after-milliseconds $MASTER_NAME 5000"
        echo "sentinel failover-timeout $MASTER_NAME 60000"
    } >> "$conf"
    systemctl restart redis-sentinel
fi
systemctl enable --quiet --now redis-sentinel
