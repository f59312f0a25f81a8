#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The real-Moodle tests read the lab's URL and tokens from MOODLE_LAB_DIR (started by install-test-deps.sh).
export MOODLE_LAB_DIR=${MOODLE_LAB_DIR:-/tmp/moodle-lab}
export MOODLE_LAB_SMTP=${MOODLE_LAB_SMTP:-127.0.0.1:2526}
bash scripts/install-test-deps.sh
# Test binaries run in parallel; each starts its own Azurite / slapd on free loopback ports.
# --workspace: the tests/testkit crate (doubles, `bench`) is built and linted with the rest.
cargo test --all-targets --workspace --locked "$@"
