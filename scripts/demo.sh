#!/usr/bin/env bash
# The README's first command: set up a fresh machine and run chamberlain's main job on examples/acme against the
# lab of real servers. Idempotent; the first run builds the lab servers (see README, "The lab").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CHAMBERLAIN_VENV:-.venv}
bash scripts/setup.sh --lab
CH="$VENV/bin/chamberlain"
OUT=${CHAMBERLAIN_DEMO_OUT:-out/demo}
mkdir -p "$OUT"

if "$CH" demo --help >/dev/null 2>&1; then
  exec "$CH" demo "$@"
fi

# Until `chamberlain demo` exists: the offline part on the example, then the lab of real servers.
echo "== validate examples/acme"
"$CH" validate examples/acme
echo "== render examples/acme -> $OUT/render"
"$CH" render examples/acme -o "$OUT/render"
echo "== inventory -> $OUT/inventory.html"
"$CH" inventory examples/acme -o html > "$OUT/inventory.html"
"$CH" inventory examples/acme
echo "== lab up"
"$CH" lab up
trap '"$CH" lab down >/dev/null' EXIT
"$CH" lab status
