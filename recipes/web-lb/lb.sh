#!/bin/sh
# HAProxy balancing HTTP over $BACKENDS with health checks. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${LB_PORT:=80}" "${BALANCE:=roundrobin}" "${BACKENDS:=web1 web2}"
if ! dpkg-query -W -f='${Status}' haproxy 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq haproxy >/dev/null
fi
servers=""
for b in $BACKENDS; do
    servers="$servers
    server $b $b:80 check inter 1s fall 2 rise 2"
done
config="global
    log /dev/log local0
    maxconn 2048
    user haproxy
    group haproxy
    daemon

defaults
    mode http
    log global
    option httplog
    option redispatch
    retries 2
    timeout connect 3s
    timeout client 30s
    timeout server 30s

frontend www
    bind *:$LB_PORT
    default_backend web

backend web
    balance $BALANCE
    option httpchk GET /$servers"
if [ "$(cat /etc/haproxy/haproxy.cfg)" != "$config" ]; then
    printf '%s\n' "$config" > /etc/haproxy/haproxy.cfg.new
    haproxy -c -q -f /etc/haproxy/haproxy.cfg.new
    mv /etc/haproxy/haproxy.cfg.new /etc/haproxy/haproxy.cfg
    systemctl reload-or-restart haproxy
fi
systemctl enable --quiet --now haproxy
