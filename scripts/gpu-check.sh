#!/usr/bin/env bash
# `make gpu-check`: the GPU tests (marked `gpu`) on a machine with CUDA, then benchmarks/gpu_check.py's
# summary table. pytest's "nothing collected" (exit 5) counts as success; a failed check row does not.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$INFEROPT_ROOT"

if [ "${INFEROPT_SYSTEM_PYTHON:-0}" = 1 ]; then
  # A lent GPU machine has no package index: use its own torch and install only the wheels
  # carried in .gpu-wheels/ (pip download --python-version of what the image lacks).
  if compgen -G ".gpu-wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps .gpu-wheels/*.whl
  fi
  pytest() { python3 -m pytest "$@"; }
else
  ensure_venv dev
  export PATH="$VENV/bin:$PATH"
fi
status=0
if [ ! -d tests/gpu ]; then
  log "no tests/gpu folder: no GPU tests to run"
else
  pytest -m gpu tests/gpu "$@" || status=$?
  if [ "$status" = 5 ]; then
    log "no GPU tests collected"
    status=0
  fi
fi
# The short GPU benchmark and its summary table (skips, and says so, what this machine lacks).
python_bin=python
[ "${INFEROPT_SYSTEM_PYTHON:-0}" = 1 ] && python_bin=python3
bench=0
"$python_bin" benchmarks/gpu_check.py --budget-s "${INFEROPT_GPU_CHECK_BUDGET_S:-420}" || bench=$?
[ "$status" = 0 ] && status=$bench
exit "$status"
