#!/usr/bin/env bash
# The whole test suite: formatting and lints first (fast failure), then the
# setup checks (the README's commands, a package removed after install), then
# unit tests and integration tests that boot real clusters (as root). Used by
# CI through .ci/run.
#
# Tests record their runs in histories of their own (under target/), never in
# the user's: the suite counts the host run store's rows before and after and
# fails if they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
# Cluster tests need root; a user with sudo gets it the way setup.sh does.
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then
  echo "the test suite boots clusters and needs root: running it through sudo" >&2
  exec sudo -- "$PWD/scripts/test.sh" "$@"
fi
export PATH="$HOME/.cargo/bin:/root/.cargo/bin:$PATH"
started=$SECONDS
stage() { echo "== $* ($((SECONDS - started)) s)"; }

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "setup (with the test suite's packages)"
bash scripts/setup.sh --with-tests
# The MCP server's tests drive it with the official MCP Python SDK. Debian's own
# python3 is "externally managed" (PEP 668) and pip refuses to install into it;
# mcp and pytest have no Debian packages, so there --break-system-packages puts
# them under /usr/local, away from apt's files. A python3 of one's own (pyenv,
# venv) takes the plain install.
python3 -m pip install --quiet mcp pytest 2>/dev/null || python3 -m pip install --quiet --break-system-packages mcp pytest
# Debian starts its own Prometheus; the tests start theirs on loopback ports.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi

# The user's history: the run store's rows, run folders and recipe proofs of
# the default state directory. No test may add to it.
history_counts() {
  python3 - "${REHEARSE_HISTORY:-${REHEARSE_HOME:-/var/lib/rehearse}}" <<'EOF'
import os, sqlite3, sys
home = sys.argv[1]
db = os.path.join(home, "rehearse.db")
rows = 0
if os.path.exists(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    # History rows only: a newer rehearse bringing the schema up to date adds
    # a row to schema_migrations, which records no run.
    tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
              if t != "schema_migrations"]
    rows = sum(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables)
runs = len(os.listdir(os.path.join(home, "runs"))) if os.path.isdir(os.path.join(home, "runs")) else 0
proofs_file = os.path.join(home, "recipes", "proofs.jsonl")
proofs = sum(1 for _ in open(proofs_file)) if os.path.exists(proofs_file) else 0
print(f"run store rows {rows}, run folders {runs}, recipe proofs {proofs} ({home})")
EOF
}
before=$(history_counts)
echo "the user's history before: $before"

stage "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "setup checks: the README's commands, a package removed after install"
bash scripts/check-setup.sh

# Leftovers of an interrupted earlier run must not disturb this one.
rehearse gc >/dev/null || true
# Store tests run on SQLite and on the PostgreSQL server setup.sh started,
# each in a database of its own.
export REHEARSE_TEST_DATABASE_URL=postgresql://rehearse:rehearse@127.0.0.1:5432/rehearse
stage "cargo test"
# Independent cluster tests run side by side; each binary's tests in parallel.
status=0
cargo test --workspace --locked --no-fail-fast -- --test-threads=4 || status=$?
rehearse gc

after=$(history_counts)
echo "the user's history before: $before"
echo "the user's history after:  $after"
stage "done"
if [ "$before" != "$after" ]; then
  echo "FAIL: the test suite wrote into the user's history (a test records outside its own REHEARSE_HISTORY)" >&2
  exit 1
fi
exit "$status"
