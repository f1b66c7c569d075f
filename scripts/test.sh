#!/usr/bin/env bash
# The test command of the README: set up, lint, type-check, check the layers, then run every test — the lab tests
# against real servers included (the lab is built first when it is missing). Four pytest runs: the lab tests with
# OpenBao as the authority on one shared lab, and beside them (the lab tests mostly wait on servers, so two cores
# fit both) the unit tests, the Vault compatibility subset (marker vault_compat) against HashiCorp Vault on ports of
# its own, then the lab tests that start servers of their own (marker own_lab: the benchmark smokes). Fails when
# anything fails; every run happens even when another fails, and each prints its minutes.
# CHAMBERLAIN_TEST_SERIAL=1 runs the four one after the other, with their output interleaved in order.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CHAMBERLAIN_VENV:-.venv}
MAIN_OFFSET=${CHAMBERLAIN_LAB_TEST_PORT_OFFSET:-1000}
# Ports of its own: the two labs run at the same time.
COMPAT_OFFSET=${CHAMBERLAIN_VAULT_COMPAT_PORT_OFFSET:-$((MAIN_OFFSET + 60))}
AUTHORITY=${CHAMBERLAIN_LAB_TEST_AUTHORITY:-openbao}
SERIAL=${CHAMBERLAIN_TEST_SERIAL:-0}

bash scripts/setup.sh --lab

echo "[test] ruff"
"$VENV/bin/ruff" check src tests benchmarks
echo "[test] mypy (strict)"
"$VENV/bin/mypy"
echo "[test] import layers"
"$VENV/bin/lint-imports"

minutes() { awk -v s="$1" 'BEGIN { printf "%.1f", s / 60 }'; }

# run NAME AUTHORITY OFFSET MARKER ARGS...: one pytest run; "no test selected" (exit 5) is a pass when the
# arguments given narrowed the selection. Writes "<name> <minutes> <exit>" to $RESULTS.
run() {
  local name=$1 authority=$2 offset=$3 marker=$4 started=$SECONDS rc=0
  shift 4
  echo "[test] pytest -m '$marker' (lab authority: $authority)"
  # The arguments first, the marker last: a -m among them must not replace the selection.
  CHAMBERLAIN_LAB_TEST_AUTHORITY=$authority CHAMBERLAIN_LAB_TEST_PORT_OFFSET=$offset \
    "$VENV/bin/pytest" "$@" -m "$marker" || rc=$?
  if [ "$rc" -eq 5 ] && [ "$#" -gt 0 ]; then
    echo "[test] $name: the arguments given ($*) select no test here"
    rc=0
  fi
  echo "$name $(minutes $((SECONDS - started))) $rc" >>"$RESULTS"
}

RESULTS=$(mktemp)
BESIDE_LOG=$(mktemp)
trap 'rm -f "$RESULTS" "$BESIDE_LOG"' EXIT
beside() {
  run "unit" "$AUTHORITY" "$MAIN_OFFSET" "not lab" "$@"
  run "vault_compat(Vault)" vault "$COMPAT_OFFSET" vault_compat "$@"
  # lab tests with servers of their own (benchmark smokes, own ports): off the shared-lab run's critical path
  run "own_labs" "$AUTHORITY" "$MAIN_OFFSET" own_lab "$@"
}

started=$SECONDS
if [ "$SERIAL" = 1 ]; then
  beside "$@"
  run "lab($AUTHORITY)" "$AUTHORITY" "$MAIN_OFFSET" "lab and not own_lab" "$@"
else
  beside "$@" >"$BESIDE_LOG" 2>&1 &
  beside_pid=$!
  run "lab($AUTHORITY)" "$AUTHORITY" "$MAIN_OFFSET" "lab and not own_lab" "$@"
  wait "$beside_pid" || true
  echo "[test] ---- output of the unit and Vault-compatibility runs (beside the lab run) ----"
  cat "$BESIDE_LOG"
fi

failed=0
summary=""
while read -r name mins rc; do
  summary="$summary $name $mins min (exit $rc);"
  [ "$rc" -eq 0 ] || failed=1
done <"$RESULTS"
echo "[test] minutes:$summary wall $(minutes $((SECONDS - started)))"
if [ "$(wc -l <"$RESULTS")" -ne 4 ]; then
  echo "[test] a pytest run did not report"
  failed=1
fi
exit "$failed"
