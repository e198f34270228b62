#!/bin/sh
# dnsmasq answering for the cluster's hosts and DOMAIN. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${DOMAIN:=internal}" "${RECORDS:=}"
if ! dpkg-query -W -f='${Status}' dnsmasq 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq dnsmasq >/dev/null
fi
conf="# Internal DNS: hosts from /etc/hosts, also as HOST.$DOMAIN
domain=$DOMAIN
local=/$DOMAIN/
expand-hosts
domain-needed
bogus-priv
no-resolv
listen-address=0.0.0.0
bind-interfaces"
for rec in $RECORDS; do
    name=${rec%%=*}; host=${rec#*=}
    addr=$(getent ahostsv4 "$host" | awk 'NR==1 {print $1}')
    [ -n "$addr" ] || { echo "record $rec: host $host has no address" >&2; exit 1; }
    conf="$conf
address=/$name.$DOMAIN/$addr"
done
if [ "$(cat /etc/dnsmasq.d/internal.conf 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" > /etc/dnsmasq.d/internal.conf
    dnsmasq --test
    systemctl restart dnsmasq
fi
systemctl enable --quiet --now dnsmasq
