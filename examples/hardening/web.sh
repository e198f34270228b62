#!/bin/bash
# The shop's web node: HTTPS on 443, a metrics endpoint on 9100 for the back
# network, a deploy user, a config file and a backup helper.
# HARDENED=no is how it is often first written; HARDENED=yes is the fix.
set -eu
hardened=${HARDENED:?set HARDENED to yes or no}

put() { # file content: written only when it differs, so a second run changes nothing
  [ "$(cat "$1" 2>/dev/null)" = "$2" ] || printf '%s\n' "$2" > "$1"
}

# --- deploy user and sshd ----------------------------------------------------
id deploy >/dev/null 2>&1 || useradd -m -s /bin/bash deploy
state=$(passwd -S deploy | awk '{print $2}')   # P: has a password, L: locked
if [ "$hardened" = yes ]; then
  [ "$state" = L ] || passwd -l deploy >/dev/null
  put /etc/ssh/sshd_config.d/00-shop.conf "$(printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no')"
else
  [ "$state" = P ] || echo 'deploy:shop2024' | chpasswd
  put /etc/ssh/sshd_config.d/00-shop.conf "PasswordAuthentication yes"
fi
install -d -m 0755 /run/sshd   # sshd -t needs it; ssh.service makes it only while running
sshd -t
systemctl try-reload-or-restart ssh   # socket-activated sshd reads the file on the next connection

# --- config and helper -------------------------------------------------------
mkdir -p /etc/shop /srv/shop /srv/metrics
put /etc/shop/shop.conf "db_password=change-me"
put /srv/shop/index.html "shop"
put /srv/metrics/index.html "shop_up 1"
cmp -s /bin/true /usr/local/bin/shop-backup || install -m 0755 /bin/true /usr/local/bin/shop-backup
mode() { # mode file: changed only when it differs
  [ "$(stat -c %a "$2")" = "$1" ] || chmod "$1" "$2"
}
if [ "$hardened" = yes ]; then
  mode 640 /etc/shop/shop.conf
  mode 755 /usr/local/bin/shop-backup
else
  mode 666 /etc/shop/shop.conf          # "so the app can write it"
  mode 4755 /usr/local/bin/shop-backup  # "so backups can read everything"
fi

# --- TLS certificate ---------------------------------------------------------
d=/etc/ssl/private/shop
mkdir -p -m 0700 $d
if [ "$(cat $d/variant 2>/dev/null)" != "$hardened" ]; then
  if [ "$hardened" = yes ]; then name=web days=90; else name=localhost days=-1; fi
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout $d/shop.key -out $d/shop.csr -subj "/CN=$name" -addext "subjectAltName=DNS:$name" 2>/dev/null
  openssl x509 -req -in $d/shop.csr -key $d/shop.key -days $days -copy_extensions copy \
    -out $d/shop.pem 2>/dev/null
  echo "$hardened" > $d/variant
fi

# --- services ----------------------------------------------------------------
if [ "$hardened" = yes ]; then
  tls_opts=""
  metrics_bind=$(getent hosts web.back | awk '{print $1; exit}')
else
  tls_opts="-cipher DEFAULT:@SECLEVEL=0 -min_protocol TLSv1"
  metrics_bind=0.0.0.0
fi
unit() { # name command
  put /etc/systemd/system/$1.service "$(printf '[Service]\nExecStart=%s\n[Install]\nWantedBy=multi-user.target' "$2")"
}
unit shop-https "/usr/bin/openssl s_server -quiet -www -accept 443 -cert $d/shop.pem -key $d/shop.key $tls_opts"
unit shop-metrics "/usr/bin/python3 -m http.server 9100 --bind $metrics_bind --directory /srv/metrics"
systemctl daemon-reload
systemctl enable -q shop-https shop-metrics
systemctl reload-or-restart shop-https shop-metrics
if [ "$hardened" = yes ]; then
  systemctl disable -q --now shop-debug 2>/dev/null || true
  rm -f /etc/systemd/system/shop-debug.service
  systemctl daemon-reload
else
  # A debug server left on from development.
  unit shop-debug "/usr/bin/python3 -m http.server 8000 --directory /srv/shop"
  systemctl daemon-reload
  systemctl enable -q --now shop-debug
fi
for port in 443 9100; do
  for i in $(seq 100); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.05; done
done
