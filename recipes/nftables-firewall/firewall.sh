#!/bin/sh
# Default-drop inbound firewall with nftables, loaded at boot. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${ALLOW_TCP:=22 80}" "${ALLOW_UDP:=}"
if ! command -v nft >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq nftables >/dev/null
fi
set_of() { echo "$1" | tr -s ' ' '\n' | grep . | paste -sd, -; }
tcp=$(set_of "$ALLOW_TCP"); udp=$(set_of "$ALLOW_UDP")
rules=""
[ -n "$tcp" ] && rules="$rules
        tcp dport { $tcp } accept"
[ -n "$udp" ] && rules="$rules
        udp dport { $udp } accept"
conf="#!/usr/sbin/nft -f
flush ruleset

table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        iif lo accept
        ct state established,related accept
        ct state invalid drop
        meta l4proto { 1, 58 } accept comment \"ICMP, ICMPv6\"$rules
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
    }
    chain output {
        type filter hook output priority filter; policy accept;
    }
}"
if [ "$(cat /etc/nftables.conf 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" > /etc/nftables.conf.new
    nft -c -f /etc/nftables.conf.new
    mv /etc/nftables.conf.new /etc/nftables.conf
    chmod 0755 /etc/nftables.conf
    systemctl enable --quiet nftables
    systemctl restart nftables
fi
systemctl enable --quiet --now nftables
