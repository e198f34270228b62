#!/bin/sh
# NFS-Ganesha exporting $EXPORT_DIR over NFSv4. Safe to run twice.
set -eu
export DEBIAN_FRONTEND=noninteractive
: "${EXPORT_DIR:=/srv/share}" "${ALLOW:=10.0.0.0/8}"
if ! dpkg-query -W -f='${Status}' nfs-ganesha-vfs 2>/dev/null | grep -q 'ok installed'; then
    apt-get update -qq
    apt-get install -y -qq nfs-ganesha nfs-ganesha-vfs >/dev/null
fi
mkdir -p "$EXPORT_DIR"
chmod 0777 "$EXPORT_DIR"
conf="NFS_CORE_PARAM {
    Protocols = 4;
}
NFSv4 {
    Graceless = true;
}
EXPORT {
    Export_Id = 1;
    Path = $EXPORT_DIR;
    Pseudo = /share;
    Protocols = 4;
    Access_Type = None;
    Squash = Root_Squash;
    SecType = sys;
    CLIENT {
        Clients = $ALLOW;
        Access_Type = RW;
    }
    FSAL {
        Name = VFS;
    }
}"
if [ "$(cat /etc/ganesha/ganesha.conf)" != "$conf" ]; then
    printf '%s\n' "$conf" > /etc/ganesha/ganesha.conf
    systemctl restart nfs-ganesha
fi
systemctl enable --quiet --now nfs-ganesha
