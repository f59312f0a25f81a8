#!/usr/bin/env bash
# Builds the Linux `handler` binary and assembles the Azure Functions deployment package:
#
#   host.json                  from the repository root
#   <Name>/function.json       one folder per function, from functions/<Name>/function.json
#   handler                    the custom handler binary, mode 0755 inside the zip
#
# and nothing else. The zip is deterministic (sorted entries, fixed timestamps), so the same binary
# gives the same SHA-256 and deploy.sh can skip a publish that would change nothing.
#
# Usage: infra/package.sh [--binary PATH] [--target TRIPLE] [--out DIR]
#   --binary PATH    use this binary instead of building one (tests pass a debug build)
#   --target TRIPLE  cargo target to build (default x86_64-unknown-linux-musl: static, so the
#                    glibc of the Functions image does not matter)
#   --out DIR        where handler.zip goes (default: $CARGO_TARGET_DIR/package or target/package)
# Prints the zip's path on the last line of stdout.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=""
target="x86_64-unknown-linux-musl"
out="${CARGO_TARGET_DIR:-$root/target}/package"

die() { echo "package.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
    --target) [ $# -ge 2 ] || die "--target needs a triple"; target=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

command -v python3 >/dev/null 2>&1 || die "python3 is needed to write the zip"
[ -f "$root/host.json" ] || die "no host.json at $root"
shopt -s nullglob
function_files=("$root"/functions/*/function.json)
shopt -u nullglob
[ ${#function_files[@]} -gt 0 ] || die "no functions/<Name>/function.json under $root"

if [ -z "$binary" ]; then
  echo "building handler (release, $target)" >&2
  (cd "$root" && cargo build --release --locked --bin handler --target "$target" >&2)
  binary="${CARGO_TARGET_DIR:-$root/target}/$target/release/handler"
fi
[ -f "$binary" ] || die "binary not found: $binary"
# The Functions host runs Linux x86-64 ELF executables only.
[ "$(head -c 4 "$binary" | od -An -c | tr -d ' \n')" = "177ELF" ] || die "$binary is not an ELF executable"

mkdir -p "$out"
zip_path="$out/handler.zip"

python3 - "$root" "$binary" "$zip_path" "${function_files[@]}" <<'PY'
import os, sys, zipfile
root, binary, zip_path, *function_files = sys.argv[1:]
entries = [("host.json", os.path.join(root, "host.json"), 0o644)]
for f in function_files:
    name = os.path.basename(os.path.dirname(f))
    entries.append((f"{name}/function.json", f, 0o644))
entries.append(("handler", binary, 0o755))
tmp = zip_path + ".tmp"
with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for arcname, path, mode in sorted(entries):
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        info.create_system = 3  # Unix, so the host's unzip honours the mode bits
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as src:
            z.writestr(info, src.read())
os.replace(tmp, zip_path)
PY

echo "package: $zip_path ($(sha256sum "$zip_path" | cut -d' ' -f1))" >&2
echo "$zip_path"
