#!/bin/sh
# Key-only SSH through an sshd drop-in, validated before reload. Safe to run twice.
set -eu
: "${PERMIT_ROOT:=prohibit-password}" "${MAX_AUTH_TRIES:=3}"
conf=/etc/ssh/sshd_config.d/10-hardening.conf
want="PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PubkeyAuthentication yes
PermitRootLogin $PERMIT_ROOT
MaxAuthTries $MAX_AUTH_TRIES
X11Forwarding no"
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" > "$conf.new"
    chmod 0644 "$conf.new"
    mv "$conf.new" "$conf"
    if ! sshd -t; then
        rm -f "$conf"
        echo "sshd rejected the hardening settings; left sshd as it was" >&2
        exit 1
    fi
    systemctl reload ssh
fi
