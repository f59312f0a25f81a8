#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, from the package
# registries only: Debian packages (slapd, ldap-utils, shellcheck), the pinned npm test
# tools (Azurite) and the pinned Python tools. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pair in slapd:slapd ldapadd:ldap-utils shellcheck:shellcheck; do
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
echo "test dependencies ready"
