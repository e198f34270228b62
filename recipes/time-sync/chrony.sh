#!/bin/sh
# chrony as the cluster's time server (server) or following it (client). Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
role=${ROLE:?set ROLE to server or client}
: "${SERVER:=ntp}" "${ALLOW:=10.0.0.0/8}" "${UPSTREAM:=}"
if ! dpkg-query -W -f='${Status}' chrony 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq chrony >/dev/null
fi
changed=no
# A container cannot set the clock: keep chrony syncing and serving without touching it.
dropin=/etc/systemd/system/chrony.service.d/container.conf
if systemd-detect-virt --container --quiet; then
    want='[Service]
ExecStart=
ExecStart=!/usr/sbin/chronyd -x $DAEMON_OPTS
[Unit]
ConditionCapability='
    if [ "$(cat "$dropin" 2>/dev/null)" != "$want" ]; then
        mkdir -p "$(dirname "$dropin")"
        printf '%s\n' "$want" > "$dropin"
        printf 'DAEMON_OPTS=""\n' > /etc/default/chrony
        systemctl daemon-reload
        changed=yes
    fi
fi
if [ "$role" = server ]; then
    sources=""
    for s in $UPSTREAM; do sources="${sources}server $s iburst
"; done
    conf="${sources}local stratum 8
allow $ALLOW
driftfile /var/lib/chrony/chrony.drift
makestep 1 3
rtcsync"
else
    conf="server $SERVER iburst minpoll 0 maxpoll 4
driftfile /var/lib/chrony/chrony.drift
makestep 1 3"
fi
if [ "$(cat /etc/chrony/chrony.conf)" != "$conf" ]; then
    printf '%s\n' "$conf" > /etc/chrony/chrony.conf
    changed=yes
fi
systemctl enable --quiet chrony
if [ "$changed" = yes ] || ! systemctl is-active --quiet chrony; then
    systemctl restart chrony
fi
