#!/usr/bin/env bash
# The test command of the README: set up, lint, type-check, check the layers, then run every test — the lab tests
# against real servers included (the lab is built first when it is missing). Fails when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CHAMBERLAIN_VENV:-.venv}

bash scripts/setup.sh --lab

echo "[test] ruff"
"$VENV/bin/ruff" check src tests benchmarks
echo "[test] mypy (strict)"
"$VENV/bin/mypy"
echo "[test] import layers"
"$VENV/bin/lint-imports"
echo "[test] pytest"
"$VENV/bin/pytest" "$@"
