#!/bin/sh
# nginx serving HTTPS with a certificate from the internal CA. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${CA_HOST:=ca}"
ssh="ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
if ! dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq nginx >/dev/null
fi
dir=/etc/nginx/tls
mkdir -p "$dir"
name=$(hostname)
ca=$($ssh "$CA_HOST" cat /etc/internal-ca/ca.crt)
printf '%s\n' "$ca" > "$dir/ca.crt"
if [ ! -f "$dir/server.key" ]; then
    (umask 077; openssl ecparam -name prime256v1 -genkey -noout -out "$dir/server.key")
fi
if [ ! -f "$dir/server.crt" ] \
    || ! openssl x509 -in "$dir/server.crt" -noout -checkend 2592000 >/dev/null \
    || ! openssl verify -CAfile "$dir/ca.crt" "$dir/server.crt" >/dev/null 2>&1; then
    openssl req -new -key "$dir/server.key" -subj "/CN=$name" \
        | $ssh "$CA_HOST" ca-sign "$name" "$(hostname -f)" > "$dir/server.crt.new"
    mv "$dir/server.crt.new" "$dir/server.crt"
    changed=yes
fi
site="server {
    listen 443 ssl default_server;
    server_name $name;
    ssl_certificate $dir/server.crt;
    ssl_certificate_key $dir/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    root /var/www/html;
}"
if [ "$(cat /etc/nginx/sites-enabled/tls 2>/dev/null)" != "$site" ]; then
    printf '%s\n' "$site" > /etc/nginx/sites-enabled/tls
    changed=yes
fi
echo "<h1>tls on $name</h1>" > /var/www/html/index.html
systemctl enable --quiet --now nginx
if [ "${changed:-no}" = yes ]; then
    nginx -t -q
    systemctl reload nginx
fi
