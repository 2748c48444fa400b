#!/usr/bin/env bash
# `make gpu-check`: the GPU tests (marked `gpu`) on a machine with CUDA.
# Succeeds when there is nothing to run yet (no tests/gpu, or pytest's exit 5).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$INFEROPT_ROOT"

ensure_venv dev
export PATH="$VENV/bin:$PATH"
if [ ! -d tests/gpu ]; then
  log "no tests/gpu folder: no GPU tests to run"
  exit 0
fi
status=0
pytest -m gpu tests/gpu "$@" || status=$?
if [ "$status" = 5 ]; then
  log "no GPU tests collected"
  exit 0
fi
exit "$status"
