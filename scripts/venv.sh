#!/usr/bin/env bash
# scripts/venv.sh runtime|dev COMMAND...: run COMMAND with the project's venv
# first on PATH, installing requirements first if they changed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$INFEROPT_ROOT"

[ $# -ge 2 ] || die "usage: scripts/venv.sh runtime|dev COMMAND..."
kind="$1"
shift
ensure_venv "$kind"
ensure_llama_cpp_tools
export PATH="$VENV/bin:$PATH"
exec "$@"
