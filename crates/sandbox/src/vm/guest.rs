//! What runs inside a VM before and beside the node's own system: the
//! initramfs's `/init`, the readiness signal and the minimal init.

/// Name of the virtio-serial port the guest announces readiness on.
pub const READY_PORT: &str = "org.rehearse.ready";

/// Modules the initramfs loads before it can find the root disk, the network
/// cards and the readiness port (with their dependencies, resolved at build).
pub const BOOT_MODULES: &[&str] = &["virtio_mmio", "virtio_blk", "virtio_net", "virtio_console"];

/// `/init` of the initramfs, run by busybox: drivers, root disk, the node's
/// files, interface names, then the root's init. Any failure powers the VM off
/// with a line the boot log shows, so a broken boot ends at once instead of at
/// the boot timeout.
pub const INITRAMFS_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /bin /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "rehearse-initramfs: $*"; poweroff -f; sleep 5; exit 1; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
  insmod "/lib/modules/$m.ko" || fail "cannot load the kernel module $m"
done < /lib/modules/load-order
init=/sbin/init
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    rehearse.init=*) init="${arg#rehearse.init=}" ;;
    rehearse.probe=1) echo REHEARSE-PROBE-OK; poweroff -f; sleep 5 ;;
  esac
done
i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1)); [ "$i" -gt 500 ] && fail "no root disk (/dev/vda)"
  usleep 20000
done
# Interfaces get the names the cluster gave them, matched by MAC address:
# first out of the way, then into place, so eth0/eth1 may swap.
if [ -f /rehearse/nics ]; then
  n=0
  for d in /sys/class/net/*; do
    [ "${d##*/}" = lo ] && continue
    ip link set "${d##*/}" name "rhtmp$n"; n=$((n + 1))
  done
  while read -r mac name; do
    for d in /sys/class/net/rhtmp*; do
      [ "$(cat "$d/address")" = "$mac" ] && ip link set "${d##*/}" name "$name"
    done
  done < /rehearse/nics
fi
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount the root disk"
if [ -d /rehearse/root ]; then
  cp -a /rehearse/root/. /newroot/ || fail "cannot install the node's files"
fi
[ -x "/newroot$init" ] || [ -L "/newroot$init" ] || fail "the root has no $init"
umount /proc /sys
mount --move /dev /newroot/dev 2>/dev/null || umount /dev
exec switch_root /newroot "$init"
"#;

/// Tells the host, through the readiness port, that the node is up.
pub const READY_SCRIPT: &str = r#"#!/bin/sh
# Written by rehearse: tells the host this VM has booted (sshd is listening).
for p in /sys/class/virtio-ports/*; do
  if [ "$(cat "$p/name" 2>/dev/null)" = org.rehearse.ready ]; then
    printf 'READY=1\n' > "/dev/${p##*/}"
    exit 0
  fi
done
echo "rehearse: the readiness port is missing" >&2
exit 1
"#;

/// The systemd unit that runs [`READY_SCRIPT`] once sshd runs: the guest says
/// when it is ready, the host does not poll.
pub const READY_UNIT: &str = "\
[Unit]
Description=rehearse: tell the host this VM is ready
After=ssh.service rehearse-network.service
Wants=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/lib/rehearse/vm-ready

[Install]
WantedBy=multi-user.target
";

/// PID 1 of a VM booted with the minimal init: filesystems, hostname,
/// addresses, sshd, readiness, then reaping orphans until asked to stop
/// (SIGTERM), when it syncs and powers off. No units, no journal: for quick
/// commands and kernel work where a full systemd boot would cost too much
/// (notably under TCG, where systemd takes about 95 s to boot).
pub const MINIMAL_INIT: &str = r#"#!/bin/sh
# Written by rehearse: the minimal init of a VM node.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /dev/shm
mount -o remount,rw /
cat /etc/hostname > /proc/sys/kernel/hostname
/usr/local/lib/rehearse/network.sh
mkdir -p /run/sshd
/usr/sbin/sshd
/usr/local/lib/rehearse/vm-ready
stop() {
  kill -TERM -1 2>/dev/null; sleep 1; kill -KILL -1 2>/dev/null
  sync; umount -a -r 2>/dev/null; sync
  echo o > /proc/sysrq-trigger
}
trap stop TERM INT
while :; do
  sleep 1 &
  wait
done
"#;
