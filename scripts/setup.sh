#!/usr/bin/env bash
# Installs what rehearse needs on a Debian/Ubuntu host and builds it.
# Run as root. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh must run as root (it installs packages): sudo $0" >&2
  exit 1
fi

packages=(
  systemd-container   # systemd-nspawn: the nodes
  mmdebstrap          # golden images
  nftables            # per-cluster firewall
  iptables            # NFQUEUE for link latency on kernels without netem or nft queue
  iproute2            # bridges and veths
  apt-cacher-ng       # host-side package cache for nodes
  openssh-client      # cluster keys, ssh into nodes
  util-linux          # nsenter
  tar
  ansible-core        # Ansible steps
  python3
  python3-pip         # the MCP tests drive the server with the official Python SDK
  curl
  ca-certificates
  qemu-system-x86     # VM nodes (backend: vm): microVMs
  qemu-utils          # qemu-img: a copy-on-write disk per VM node
  busybox-static      # the VM nodes' initramfs
  kmod                # depmod: the module index on VM disks, so modprobe works inside
  e2fsprogs           # mkfs.ext4: the VM nodes' base disk
  gcc                 # crates that build C
  postgresql          # the run store on a server (REHEARSE_DATABASE_URL); SQLite is the default
  pkg-config
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The distribution's own apt-cacher-ng service is not needed: rehearse runs its
# own instance on its own address and port.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true
fi

# PostgreSQL for the run store, when REHEARSE_DATABASE_URL points at it: the
# server started (without systemd as PID 1, through Debian's pg_ctlcluster),
# and a `rehearse` role and database on loopback.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl enable --now postgresql >/dev/null 2>&1 || true
fi
pg_lsclusters -h | while read -r version name _ status _; do
  [ "$status" = online ] || pg_ctlcluster "$version" "$name" start
done
runuser -u postgres -- psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname = 'rehearse'" | grep -q 1 ||
  runuser -u postgres -- psql -qc "CREATE ROLE rehearse LOGIN CREATEDB PASSWORD 'rehearse'"
runuser -u postgres -- psql -qtAc "SELECT 1 FROM pg_database WHERE datname = 'rehearse'" | grep -q 1 ||
  runuser -u postgres -- createdb -O rehearse rehearse

# The MCP server's tests drive it with the official MCP Python SDK. Debian's own
# python3 is "externally managed" (PEP 668) and pip refuses to install into it;
# mcp and pytest have no Debian packages, so there --break-system-packages puts
# them under /usr/local, away from apt's files. A python3 of one's own (pyenv,
# venv) takes the plain install.
python3 -m pip install --quiet mcp pytest 2>/dev/null || python3 -m pip install --quiet --break-system-packages mcp pytest

if ! command -v cargo >/dev/null; then
  # Under sudo, the toolchain is usually the invoking user's.
  user_home=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)
  for c in "$HOME/.cargo/bin/cargo" "$user_home/.cargo/bin/cargo" /root/.cargo/bin/cargo; do
    [ -x "$c" ] && export PATH="$(dirname "$c"):$PATH" && break
  done
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs), then run this again" >&2
  exit 1
fi
cargo build --release --locked -q -p rehearse-cli
install -m 0755 target/release/rehearse /usr/local/bin/rehearse
rehearse doctor
# Build (or reuse) the default image now, so the first cluster starts at once.
rehearse image build debian-12
