#!/usr/bin/env bash
# The masgen test command: install test dependencies, then run every cargo
# test target. Extra arguments are passed to `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The setup script prints the venv python on its last stdout line.
MASGEN_SYNAPSE_PYTHON="$(bash scripts/setup-test-deps.sh | tail -n1)"
export MASGEN_SYNAPSE_PYTHON
echo "[test.sh] MASGEN_SYNAPSE_PYTHON=$MASGEN_SYNAPSE_PYTHON" >&2

set +e
cargo test --all-targets "$@"
status=$?
set -e
exit "$status"
