#!/usr/bin/env bash
# `make test`: the set-up of `make run` plus the dev requirements and Debian's
# chromium, then lint, format check, migrations check and the whole pytest suite.
# Extra arguments go to pytest. Tests start their own Redis and Celery workers.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$INFEROPT_ROOT"

ensure_venv dev
ensure_llama_cpp_tools
export PATH="$VENV/bin:$PATH"
ensure_redis_binary
ensure_chromium
mkdir -p "$LOCAL_DIR"

log "ruff check"
ruff check .
log "ruff format --check"
ruff format --check .
log "makemigrations --check"
python manage.py makemigrations --check --dry-run
log "pytest"
exec pytest "$@"
