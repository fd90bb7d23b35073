#!/usr/bin/env bash
# The masgen test command: install test dependencies, then run every cargo
# test target. Extra arguments are passed to `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The setup script prints the venv python on its last stdout line.
MASGEN_SYNAPSE_PYTHON="$(bash scripts/setup-test-deps.sh | tail -n1)"
export MASGEN_SYNAPSE_PYTHON
export MASGEN_SYNAPSE_OLD_PYTHON="${MASGEN_SYNAPSE_OLD_VENV:-$HOME/.cache/masgen/synapse-1.135-venv}/bin/python"
echo "[test.sh] MASGEN_SYNAPSE_PYTHON=$MASGEN_SYNAPSE_PYTHON" >&2

# Keep cargo's own output, and close with one total over every test binary
# (the last binary cargo runs is the benchmark smoke test, which prints no
# summary of its own).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
read -r passed failed < <(awk '/^test result: /{for(i=1;i<=NF;i++){if($(i+1)~/^passed/)p+=$i; if($(i+1)~/^failed/)f+=$i}} END{print p+0, f+0}' "$log")
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
