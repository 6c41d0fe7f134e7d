#!/usr/bin/env bash
# The whole test suite: installs and starts the real storage servers on 127.0.0.1 (sshd, smbd,
# Azurite, s3s-fs), then runs every test against them, then stops what it started.
# Needs root (apt-get, sshd). Reuses server installs in $TS_HOME (default /tmp/test-servers)
# and the cargo target dir when present.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (rustup) first" >&2; exit 1
fi
eval "$(scripts/test-servers/start-all.sh)"
trap 'scripts/test-servers/stop-all.sh' EXIT

# One release build (with the crash-test hooks) serves the binary, the integration tests and the
# library tests.
cargo build --release --locked --all-targets --features test-hooks
cargo test --release --locked --features test-hooks --no-fail-fast -- --test-threads=4

# The binary users build holds no test hook.
cargo build --release --locked --bin cairn
if grep -q CAIRN_TEST_ "${CARGO_TARGET_DIR:-target}/release/cairn"; then
  echo "FAIL: the release binary contains a test hook (CAIRN_TEST_*)" >&2; exit 1
fi
echo "release binary: no test hook"
