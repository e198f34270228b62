#!/bin/sh
# rsyslog receiving over TCP, one file per sending host. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${PORT:=514}"
if ! dpkg-query -W -f='${Status}' rsyslog 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq rsyslog >/dev/null
fi
conf="module(load=\"imtcp\")
template(name=\"PerHost\" type=\"string\" string=\"/var/log/remote/%HOSTNAME%/syslog\")
ruleset(name=\"remote\") {
    action(type=\"omfile\" dynaFile=\"PerHost\" createDirs=\"on\")
    stop
}
input(type=\"imtcp\" port=\"$PORT\" ruleset=\"remote\")"
if [ "$(cat /etc/rsyslog.d/10-collector.conf 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" > /etc/rsyslog.d/10-collector.conf
    rsyslogd -N1 >/dev/null
    systemctl restart rsyslog
fi
systemctl enable --quiet --now rsyslog
