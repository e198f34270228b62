set -eu
export DEBIAN_FRONTEND=noninteractive
if ! dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq nginx >/dev/null
fi
mkdir -p /srv/app
echo "app is up" > /srv/app/index.html
cat > /etc/nginx/sites-available/app <<'CONF'
server {
    listen 8080
    root /srv/app;
}
CONF
ln -sf /etc/nginx/sites-available/app /etc/nginx/sites-enabled/app
nginx -t
systemctl reload nginx
