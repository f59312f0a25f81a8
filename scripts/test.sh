#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
# Test binaries run in parallel; each starts its own Azurite / slapd on free loopback ports.
cargo test --all-targets --locked "$@"
