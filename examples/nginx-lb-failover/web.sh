# nginx serving a page that names the host. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
if ! dpkg-query -W -f='${Status}' nginx 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq nginx >/dev/null
fi
page="<h1>served by $(hostname)</h1>"
if [ "$(cat /var/www/html/index.html 2>/dev/null)" != "$page" ]; then
    echo "$page" > /var/www/html/index.html
fi
systemctl enable --quiet --now nginx
