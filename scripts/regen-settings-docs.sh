#!/usr/bin/env bash
# Regenerates the settings table in README.md and local.settings.example.json from the code
# (`handler settings`), so the docs cannot drift from what the app reads. Tests check both.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin handler
bin="${CARGO_TARGET_DIR:-target}/debug/handler"
"$bin" settings --format example > local.settings.example.json
table=$("$bin" settings --format markdown)
python3 - "$table" <<'PY'
import sys
table = sys.argv[1]
text = open("README.md").read()
start, end = "<!-- settings:start -->", "<!-- settings:end -->"
i, j = text.index(start) + len(start), text.index(end)
open("README.md", "w").write(text[:i] + "\n" + table + "\n" + text[j:])
PY
echo "README.md and local.settings.example.json regenerated"
