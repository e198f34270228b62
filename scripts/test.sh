#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests that boot real
# clusters (as root). Used by CI through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:/root/.cargo/bin:$PATH"
# Leftovers of an interrupted earlier run must not disturb this one.
rehearse gc >/dev/null || true
# Store tests run on SQLite and on the PostgreSQL server setup.sh started,
# each in a database of its own.
export REHEARSE_TEST_DATABASE_URL=postgresql://rehearse:rehearse@127.0.0.1:5432/rehearse
# Independent cluster tests run side by side; each binary's tests in parallel.
cargo test --workspace --locked --no-fail-fast -- --test-threads=4
rehearse gc
