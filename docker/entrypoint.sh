#!/bin/sh
# Container entry point: `web` (migrate, set up, serve with gunicorn) or `worker` (one Celery worker
# on $INFEROPT_QUEUES: default cpu, `auto` = what the probe finds); anything else is run as given (e.g. `python manage.py shell`).
set -eu

case "${1:-web}" in
web)
  python manage.py migrate --noinput
  python manage.py ensure_admin --credentials-file "$INFEROPT_DATA_DIR/admin-credentials"
  # The first start trains the tiny demo LMs into $INFEROPT_ZOO_DIR (minutes); INFEROPT_SETUP_DEMO=false skips it.
  if [ "${INFEROPT_SETUP_DEMO:-true}" != false ]; then
    python manage.py setup_demo
  fi
  python manage.py collectstatic --noinput -v 0
  exec gunicorn webapp.wsgi:application --config /app/docker/gunicorn.conf.py
  ;;
worker)
  queues="${INFEROPT_QUEUES:-cpu}"
  # auto: the queues this machine can serve (cpu; gpu and gpu.smXY with a CUDA GPU), from the capability probe.
  if [ "$queues" = auto ]; then
    queues="$(python -m optimizers.capabilities --queues)"
  fi
  exec celery -A workers.celery worker -Q "$queues" \
    --concurrency "${INFEROPT_WORKER_CONCURRENCY:-1}" --loglevel INFO
  ;;
*)
  exec "$@"
  ;;
esac
