#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests that boot real
# clusters (as root). Used by CI through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Test-only packages: a real browser for the dashboard's tests, a real
# Prometheus server scraping /metrics.
test_packages=(chromium prometheus)
missing=()
for p in "${test_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts its own Prometheus; the tests start theirs on loopback ports.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi
export PATH="$HOME/.cargo/bin:/root/.cargo/bin:$PATH"
# Leftovers of an interrupted earlier run must not disturb this one.
rehearse gc >/dev/null || true
# Store tests run on SQLite and on the PostgreSQL server setup.sh started,
# each in a database of its own.
export REHEARSE_TEST_DATABASE_URL=postgresql://rehearse:rehearse@127.0.0.1:5432/rehearse
# Independent cluster tests run side by side; each binary's tests in parallel.
cargo test --workspace --locked --no-fail-fast -- --test-threads=4
rehearse gc
