#!/usr/bin/env bash
# `make run`: set up what is missing, then serve the dashboard and one Celery
# worker in the foreground. Ctrl-C stops both, and the Redis server if this
# script started it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$INFEROPT_ROOT"

PORT="${PORT:-8000}"
WEB_PID=""
WORKER_PID=""

cleanup() {
  local status=$?
  # Keep stopping the children even if our output is gone (e.g. `make run | tee` after Ctrl-C).
  trap '' PIPE INT TERM
  trap - EXIT
  [ -n "$WEB_PID$WORKER_PID$REDIS_PID" ] && log "stopping"
  # The worker first: it may be finishing a task and still needs Redis.
  stop_group "$WORKER_PID" "the Celery worker" 20
  stop_group "$WEB_PID" "the web server" 10
  stop_group "$REDIS_PID" "redis-server" 5
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_venv runtime
ensure_llama_cpp_tools
export PATH="$VENV/bin:$PATH"
mkdir -p "$LOCAL_DIR"
port_is_free "$PORT" || die "port $PORT on 127.0.0.1 is in use: stop what serves it or set PORT"

ensure_redis
export REDIS_URL

python manage.py migrate --noinput
python manage.py ensure_admin --credentials-file .local/admin-credentials
python manage.py setup_demo
python manage.py collectstatic --noinput -v 0

# Each server gets its own process group (setsid) so cleanup stops the whole tree.
setsid gunicorn webapp.wsgi:application --bind "127.0.0.1:$PORT" \
  --workers 2 --worker-class gthread --threads 4 --timeout 300 \
  --access-logfile - --error-logfile - --no-control-socket </dev/null &
WEB_PID=$!
setsid celery -A workers.celery worker -Q cpu --concurrency 1 --loglevel INFO </dev/null &
WORKER_PID=$!

log "dashboard on http://127.0.0.1:$PORT/ (admin credentials in .local/admin-credentials); Ctrl-C stops everything"
# Stop everything as soon as either server exits on its own.
status=0
wait -n "$WEB_PID" "$WORKER_PID" || status=$?
is_running "$WEB_PID" || log "the web server exited (status $status)"
is_running "$WORKER_PID" || log "the Celery worker exited (status $status)"
exit "$status"
