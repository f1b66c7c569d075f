#!/usr/bin/env bash
# The test command of the README: set up, lint, type-check, check the layers, then run every test — the lab tests
# against real servers included (the lab is built first when it is missing) — with OpenBao as the authority, and
# then the Vault compatibility subset (marker vault_compat) against HashiCorp Vault. Fails when anything fails;
# both pytest runs happen even when the first one fails, and each prints its minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CHAMBERLAIN_VENV:-.venv}
MAIN_OFFSET=${CHAMBERLAIN_LAB_TEST_PORT_OFFSET:-1000}
# Its own ports, so nothing the first run left in TIME_WAIT is in the way.
COMPAT_OFFSET=${CHAMBERLAIN_VAULT_COMPAT_PORT_OFFSET:-$((MAIN_OFFSET + 60))}
AUTHORITY=${CHAMBERLAIN_LAB_TEST_AUTHORITY:-openbao}

bash scripts/setup.sh --lab

echo "[test] ruff"
"$VENV/bin/ruff" check src tests benchmarks
echo "[test] mypy (strict)"
"$VENV/bin/mypy"
echo "[test] import layers"
"$VENV/bin/lint-imports"

minutes() { awk -v s="$1" 'BEGIN { printf "%.1f", s / 60 }'; }

echo "[test] pytest (lab authority: $AUTHORITY)"
started=$SECONDS
main_rc=0
CHAMBERLAIN_LAB_TEST_AUTHORITY=$AUTHORITY CHAMBERLAIN_LAB_TEST_PORT_OFFSET=$MAIN_OFFSET \
  "$VENV/bin/pytest" "$@" || main_rc=$?
main_time=$((SECONDS - started))

echo "[test] pytest -m vault_compat (lab authority: HashiCorp Vault)"
started=$SECONDS
compat_rc=0
# The arguments first, the marker last: a -m among them must not replace the compatibility selection.
CHAMBERLAIN_LAB_TEST_AUTHORITY=vault CHAMBERLAIN_LAB_TEST_PORT_OFFSET=$COMPAT_OFFSET \
  "$VENV/bin/pytest" "$@" -m vault_compat || compat_rc=$?
compat_time=$((SECONDS - started))
if [ "$compat_rc" -eq 5 ] && [ "$#" -gt 0 ]; then
  echo "[test] vault_compat: the arguments given ($*) select no compatibility test"
  compat_rc=0
fi

echo "[test] minutes: pytest ($AUTHORITY) $(minutes $main_time) (exit $main_rc)," \
     "pytest -m vault_compat (Vault) $(minutes $compat_time) (exit $compat_rc)"
if [ "$main_rc" -ne 0 ] || [ "$compat_rc" -ne 0 ]; then
  exit 1
fi
