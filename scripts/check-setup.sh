#!/usr/bin/env bash
# Checks that the README's first commands work as written, and that setup
# notices a package apt removed. Run as root on a host already set up
# (scripts/test.sh runs it after setup.sh), so setup.sh only checks here.
#
#   1. the README's "Two commands" block, extracted from README.md, run in a
#      root shell where `sudo` is not on PATH;
#   2. the same block run by a user with sudo (a throwaway user that exists
#      only in a private mount namespace);
#   3. setup.sh in a throwaway copy-on-write root (an overlay over /, in a
#      private mount namespace; the host's packages are never touched) where
#      a required package is removed after every install: setup must fail
#      naming it, and `rehearse doctor` must report the same package missing.
#
# Runs are recorded in a history of this script's own, never the user's.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ "$(id -u)" -eq 0 ] || { echo "check-setup.sh runs as root" >&2; exit 1; }

scratch=$(mktemp -d /tmp/rehearse-check-setup.XXXXXX)
chmod 755 "$scratch"
cleanup() {
  umount -R "$scratch/root/merged" 2>/dev/null || true
  umount "$scratch/root" 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT
export REHEARSE_HISTORY="$scratch/history" REHEARSE_DATABASE_URL=
mkdir -p "$REHEARSE_HISTORY"
passed=0 failed=0
pass() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }

# The README's commands: the first ```sh block under "## Two commands".
readme_commands=$(awk '/^## Two commands/{s=1} s&&/^```sh/{b=1;next} b&&/^```/{exit} b' README.md)
if [ -z "$readme_commands" ]; then
  echo "README.md has no \`\`\`sh block under '## Two commands'" >&2
  exit 1
fi
echo "README's commands: $readme_commands"

# 1. A root shell without sudo: PATH is a folder of links to every command
# on the usual PATH except sudo.
nosudo="$scratch/nosudo-bin"
mkdir -p "$nosudo"
IFS=: read -ra path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
  for f in "$d"/*; do
    n=${f##*/}
    [ "$n" = sudo ] || [ -e "$nosudo/$n" ] || { [ -x "$f" ] && ln -s "$f" "$nosudo/$n"; } || true
  done
done
if env PATH="$nosudo" bash -c '! command -v sudo >/dev/null && { '"$readme_commands"'; }' >"$scratch/root.log" 2>&1; then
  pass "README's commands in a root shell without sudo"
else
  tail -30 "$scratch/root.log"
  fail "README's commands in a root shell without sudo (output above)"
fi

# 2. A user with sudo: a throwaway user and sudoers rule, visible only in a
# private mount namespace; the repository is bound where the user can reach it.
if command -v sudo >/dev/null; then
  if unshare --mount --propagation slave bash -s >"$scratch/sudo.log" 2>&1 <<EOF; then
set -euo pipefail
cp /etc/passwd /etc/group /etc/shadow "$scratch/"
echo "rehearse-readme:x:4242:4242::$scratch/home:/bin/bash" >>"$scratch/passwd"
echo "rehearse-readme:x:4242:" >>"$scratch/group"
echo "rehearse-readme:*:19000:0:99999:7:::" >>"$scratch/shadow"
mkdir -p "$scratch/home" "$scratch/sudoers.d" "$scratch/repo"
chown 4242:4242 "$scratch/home"
echo "rehearse-readme ALL=(ALL:ALL) NOPASSWD: ALL" >"$scratch/sudoers.d/rehearse-readme"
chmod 440 "$scratch/sudoers.d/rehearse-readme"
for f in passwd group shadow; do mount --bind "$scratch/\$f" "/etc/\$f"; done
mount --bind "$scratch/sudoers.d" /etc/sudoers.d
mount --bind "$repo" "$scratch/repo"
runuser -u rehearse-readme -- env -i HOME="$scratch/home" PATH=/usr/local/bin:/usr/bin:/bin \
  REHEARSE_HISTORY="$REHEARSE_HISTORY" REHEARSE_DATABASE_URL= \
  bash -c 'cd "$scratch/repo" && [ "\$(id -u)" = 4242 ] && { $readme_commands; }'
EOF
    pass "README's commands run by a user with sudo"
  else
    tail -30 "$scratch/sudo.log"
    fail "README's commands run by a user with sudo (output above)"
  fi
else
  fail "README's commands run by a user with sudo: sudo is not installed (scripts/setup.sh --with-tests installs it)"
fi

# 3. A package apt removes while installing: in a copy-on-write root whose
# changes live in memory and vanish with the namespace, busybox-static (a VM
# node package) is removed, and an apt hook removes it again after every dpkg
# run, as apt did to qemu-utils when it installed qemu-system-x86.
victim=busybox-static
if unshare --mount --propagation private bash -s >"$scratch/removed.log" 2>&1 <<EOF; then
set -euo pipefail
mkdir -p "$scratch/root"
mount -t tmpfs -o size=4g tmpfs "$scratch/root"
mkdir -p "$scratch/root/upper" "$scratch/root/work" "$scratch/root/merged"
m="$scratch/root/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$scratch/root/upper,workdir=$scratch/root/work" "\$m"
mount -t proc proc "\$m/proc"
mount --rbind /dev "\$m/dev"
mount --rbind /sys "\$m/sys"
chroot "\$m" dpkg --remove --force-depends $victim
cat >"\$m/etc/apt/apt.conf.d/99-rehearse-check-setup" <<'HOOK'
DPkg::Post-Invoke { "dpkg --remove --force-depends $victim >/dev/null 2>&1 || true"; };
HOOK
set +e
chroot "\$m" bash -c 'cd "$repo" && scripts/setup.sh' >"$scratch/setup.out" 2>&1
echo "setup.sh exit: \$?" >>"$scratch/setup.out"
chroot "\$m" "$repo/target/release/rehearse" doctor --packages >"$scratch/doctor.out" 2>&1
echo "doctor exit: \$?" >>"$scratch/doctor.out"
chroot "\$m" "$repo/target/release/rehearse" --json doctor >"$scratch/doctor.json" 2>/dev/null
exit 0
EOF
  cat "$scratch/setup.out" "$scratch/doctor.out" | grep -v '^ok ' || true
  setup_missing=$(sed -n 's/.*required host packages are missing after installing: \([^(]*\) (.*/\1/p' "$scratch/setup.out" | xargs)
  doctor_missing=$(sed -n 's/^missing host packages: //p' "$scratch/doctor.out" | xargs)
  doctor_check=$(python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print([c["ok"] for c in v["checks"] if c["name"]=="package "+sys.argv[2]])' "$scratch/doctor.json" "$victim" 2>/dev/null || true)
  if grep -q "setup.sh exit: 1" "$scratch/setup.out" && [ "$setup_missing" = "$victim" ] &&
    grep -q "$victim.*not installed.*dpkg removed it" "$scratch/setup.out" &&
    grep -q "doctor exit: 1" "$scratch/doctor.out" && [ "$doctor_missing" = "$victim" ] &&
    [ "$doctor_check" = "[False]" ]; then
    pass "setup.sh fails naming $victim when apt removes it, and doctor reports the same"
  else
    echo "setup missing: '$setup_missing', doctor --packages missing: '$doctor_missing', doctor --json check ok: $doctor_check"
    fail "setup.sh and doctor on a package removed after install (output above)"
  fi
else
  tail -30 "$scratch/removed.log"
  fail "the throwaway root for the removed package could not be made (output above)"
fi
# The host itself still has the package.
if dpkg-query -W -f='${Status}' "$victim" | grep -q "ok installed"; then
  pass "the host's own $victim is untouched"
else
  fail "the host's own $victim is gone"
fi

echo "setup checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
