#!/usr/bin/env bash
# Packages the Moodle message output message_teamsbridge as the zip Moodle's plugin installer
# takes (Site administration → Plugins → Install plugins): one top folder `teamsbridge/` holding
# version.php and the rest of infra/moodle/message/output/teamsbridge. Moodle unpacks it into
# message/output/teamsbridge. The zip is deterministic (sorted entries, fixed timestamps).
#
# Usage: infra/moodle/package.sh [--out DIR]
#   --out DIR   where message_teamsbridge-<version>.zip goes (default: $CARGO_TARGET_DIR/package
#               or target/package)
# Checks every PHP file with `php -l` when PHP is installed. Prints the zip's path last.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
src="$here/message/output/teamsbridge"
out="${CARGO_TARGET_DIR:-$root/target}/package"

die() { echo "package.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

command -v python3 >/dev/null 2>&1 || die "python3 is needed to write the zip"
[ -f "$src/version.php" ] || die "no version.php in $src"
version=$(sed -n "s/^\$plugin->version *= *\([0-9]\{10\}\);.*/\1/p" "$src/version.php")
[ -n "$version" ] || die "no \$plugin->version (YYYYMMDDXX) in $src/version.php"
grep -q "^\$plugin->component *= *'message_teamsbridge';" "$src/version.php" \
  || die "version.php does not declare component message_teamsbridge"

if command -v php >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do
    php -l "$f" >/dev/null || die "PHP syntax error in $f"
  done < <(find "$src" -name '*.php' -print0)
else
  echo "package.sh: php not installed, syntax not checked" >&2
fi

mkdir -p "$out"
zip_path="$out/message_teamsbridge-$version.zip"
python3 - "$src" "$zip_path" <<'PY'
import os, sys, zipfile
src, zip_path = sys.argv[1:]
entries = []
for d, _, files in os.walk(src):
    for f in files:
        path = os.path.join(d, f)
        entries.append(("teamsbridge/" + os.path.relpath(path, src).replace(os.sep, "/"), path))
tmp = zip_path + ".tmp"
with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for arcname, path in sorted(entries):
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        info.create_system = 3
        info.external_attr = (0o100000 | 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as f:
            z.writestr(info, f.read())
os.replace(tmp, zip_path)
PY

echo "package: $zip_path ($(sha256sum "$zip_path" | cut -d' ' -f1))" >&2
echo "$zip_path"
