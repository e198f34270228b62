#!/bin/sh
# Use the internal DNS server as this node's resolver. Safe to run twice.
set -eu
: "${DNS_SERVER:=dns}" "${DOMAIN:=internal}"
addr=$(getent ahostsv4 "$DNS_SERVER" | awk 'NR==1 {print $1}')
[ -n "$addr" ] || { echo "cannot find the address of $DNS_SERVER" >&2; exit 1; }
want="# Internal DNS (internal-dns recipe)
search $DOMAIN
nameserver $addr"
if [ "$(cat /etc/resolv.conf 2>/dev/null)" != "$want" ]; then
    # resolv.conf may be a symlink owned by another tool: replace the link itself.
    rm -f /etc/resolv.conf
    printf '%s\n' "$want" > /etc/resolv.conf
fi
