#!/usr/bin/env bash
# Installs what rehearse needs on a Debian/Ubuntu host, builds and installs
# `rehearse` (/usr/local/bin, on the PATH of root and of every user), checks
# that every package is still there AFTER installing (apt may remove one while
# it installs another), and builds the default image.
#
# Needs root. Run by a user with sudo, it runs itself through sudo; in a root
# shell it needs no sudo. Idempotent: on a host already set up it only checks
# (seconds).
#
#   scripts/setup.sh               what rehearse needs
#   scripts/setup.sh --with-tests  and what the test suite needs (scripts/test.sh)
#
# The package list is crates/sandbox/host-packages.txt, the same list
# `rehearse doctor` reports on: setup verifies with `rehearse doctor --packages`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    echo "setup.sh installs packages and needs root: running it through sudo" >&2
    exec sudo -- "$repo/scripts/setup.sh" "$@"
  fi
  echo "setup.sh needs root (it installs packages) and sudo is not installed: run it in a root shell" >&2
  exit 1
fi

with_tests=false
for arg in "$@"; do
  case "$arg" in
    --with-tests) with_tests=true ;;
    *) echo "setup.sh: unknown argument $arg (known: --with-tests)" >&2; exit 2 ;;
  esac
done

list=crates/sandbox/host-packages.txt
packages=()
while read -r name need _; do
  case "$name" in '' | '#'*) continue ;; esac
  if [ "$need" = test ] && ! $with_tests; then continue; fi
  packages+=("$name")
done <"$list"

export DEBIAN_FRONTEND=noninteractive
apt_log=$(mktemp /tmp/rehearse-setup-apt.XXXXXX)
trap 'rm -f "$apt_log"' EXIT
updated=false
# Installs the named packages; apt's output goes to $apt_log, shown on failure.
apt_install() {
  if ! $updated; then
    apt-get update -qq >"$apt_log" 2>&1 || { cat "$apt_log" >&2; exit 1; }
    updated=true
  fi
  echo "installing: $*"
  if ! apt-get install -y -q --no-install-recommends "$@" >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    echo "setup.sh: apt-get install $* failed (above)" >&2
    exit 1
  fi
  # apt lists what it removed to satisfy the install; say it, the check
  # below tells whether a needed package was among them.
  sed -n '/The following packages will be REMOVED:/,/^[^ ]/p' "$apt_log" | sed '$d' | sed 's/^/apt: /'
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

# Kernel limits every node draws from: written to sysctl.d so they hold after
# a reboot, and applied now where the running value is lower (never lowered).
cat >/etc/sysctl.d/60-rehearse.conf <<'EOF'
# rehearse: every node's systemd uses ~5 inotify instances and ~15+ watches, and all nodes of all
# clusters count against root (which creates their user namespaces). Debian's defaults
# (128 instances, ~8k-1M watches) stop the 25th node from booting.
fs.inotify.max_user_instances = 8192
fs.inotify.max_user_watches = 1048576
# Each idle node runs ~4-15 tasks; services add more. 32768 pids caps the host at a few hundred nodes.
kernel.pid_max = 4194304
EOF
grep -E '^[a-z]' /etc/sysctl.d/60-rehearse.conf | while IFS=' =' read -r key want; do
  have=$(sysctl -n "$key" 2>/dev/null || echo 0)
  if [ "$have" -lt "$want" ]; then
    sysctl -q -w "$key=$want" || echo "could not raise $key to $want (in a container? raise it on the host)" >&2
  fi
done

# The distribution's own apt-cacher-ng service is not needed: rehearse runs its
# own instance on its own address and port.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now apt-cacher-ng >/dev/null 2>&1 || true
fi

if ! command -v cargo >/dev/null; then
  # Under sudo, the toolchain is usually the invoking user's.
  user_home=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)
  for home in "$HOME" "$user_home" /root; do
    if [ -x "$home/.cargo/bin/cargo" ]; then
      export PATH="$home/.cargo/bin:$PATH"
      [ -d "$home/.rustup" ] && export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}"
      break
    fi
  done
fi
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs), then run this again" >&2
  exit 1
fi
cargo build --release --locked -q -p rehearse-cli
install -m 0755 target/release/rehearse /usr/local/bin/rehearse

# Verify after installing: every package installed and its tools on PATH,
# checked by the same code `rehearse doctor` reports with. A package apt
# removed while installing another gets one more install (apt then picks a
# version that fits what is installed); if it is still missing, stop here
# naming it and why.
verify=("$repo/target/release/rehearse" doctor --packages)
$with_tests && verify+=(--tests)
if ! report=$("${verify[@]}"); then
  gone=$(sed -n 's/^missing host packages: //p' <<<"$report")
  echo "after installing, missing: $gone"
  read -ra gone_list <<<"$gone"
  (apt_install "${gone_list[@]}") || true
  if ! report=$("${verify[@]}"); then
    grep -v '^ok ' <<<"$report" >&2
    echo "setup.sh: required host packages are missing after installing: $(sed -n 's/^missing host packages: //p' <<<"$report") (why and fix above)" >&2
    exit 1
  fi
fi
echo "host packages: all ${#packages[@]} present, verified after installing"

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

/usr/local/bin/rehearse doctor
# Build (or reuse) the default image now, so the first cluster starts at once.
/usr/local/bin/rehearse image build debian-12
