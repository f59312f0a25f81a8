#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, from the package
# registries only: Debian packages (slapd, ldap-utils, shellcheck, chromium for the page test), the pinned npm test
# tools (Azurite) and the pinned Python tools. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in slapd:slapd ldapadd:ldap-utils shellcheck:shellcheck chromium:chromium; do
  bin=${pair%%:*}
  pkg=${pair#*:}
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
    need_apt+=("$pkg")
  fi
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # slapd's post-install configures and tries to start a system server; tests start their own.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x tools/node_modules/.bin/azurite ]; then
  echo "installing pinned npm test tools (tools/package-lock.json)"
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -f tools/requirements.txt ]; then
  if ! python3 -m pip install --quiet --disable-pip-version-check -r tools/requirements.txt; then
    echo "pip install failed" >&2
    exit 1
  fi
fi
# The real Moodle of tests/moodle_real.rs: ../shared/moodle-lab (read-only, beside the clone) installs
# PostgreSQL + Moodle on first use (~2 min on 2 cores, ~5 s afterwards); its state lives in
# MOODLE_LAB_DIR. Moodle's mail goes to MOODLE_LAB_SMTP, where the test binary runs its SMTP sink.
# The bridge's Moodle message output (infra/moodle/) is installed into it for
# tests/notify_moodle_plugin.rs (which also installs or upgrades it itself when its version moved).
export MOODLE_LAB_DIR=${MOODLE_LAB_DIR:-/tmp/moodle-lab}
export MOODLE_LAB_SMTP=${MOODLE_LAB_SMTP:-127.0.0.1:2526}
lab_src=${MOODLE_LAB_SRC:-../shared/moodle-lab}
if [ ! -f "$lab_src/setup.sh" ]; then
  echo "$lab_src/setup.sh not found: the Moodle lab (../shared/moodle-lab) must sit beside the clone" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -E"
echo "starting the Moodle lab in $MOODLE_LAB_DIR (log: $MOODLE_LAB_DIR.setup.log)"
if ! MOODLE_LAB_PHP_SCRIPTS="$PWD/tests/moodle-lab/courses.php" \
  MOODLE_LAB_PLUGINS="message/output/teamsbridge=$PWD/infra/moodle/message/output/teamsbridge" \
  $SUDO bash "$lab_src/setup.sh" \
  >"$MOODLE_LAB_DIR.setup.log" 2>&1; then
  tail -30 "$MOODLE_LAB_DIR.setup.log" >&2
  echo "the Moodle lab did not start" >&2
  exit 1
fi
echo "test dependencies ready"
