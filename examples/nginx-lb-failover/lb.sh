# HAProxy in front of web1 and web2, round-robin, with health checks. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
if ! dpkg-query -W -f='${Status}' haproxy 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq haproxy >/dev/null
fi
config='global
    log /dev/log local0
    maxconn 2048
    user haproxy
    group haproxy
    daemon

defaults
    mode http
    log global
    option httplog
    timeout connect 3s
    timeout client 30s
    timeout server 30s

frontend www
    bind *:80
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /
    server web1 web1:80 check inter 1s
    server web2 web2:80 check inter 1s'
if [ "$(cat /etc/haproxy/haproxy.cfg)" != "$config" ]; then
    printf '%s\n' "$config" > /etc/haproxy/haproxy.cfg
    haproxy -c -q -f /etc/haproxy/haproxy.cfg
    systemctl reload-or-restart haproxy
fi
systemctl enable --quiet --now haproxy
