#!/bin/sh
# Container entry point: `web` (migrate, set up, serve with gunicorn) or `worker`
# (one Celery worker on the cpu queue); anything else is run as given.
set -eu

case "${1:-web}" in
web)
  python manage.py migrate --noinput
  python manage.py ensure_admin --credentials-file "$INFEROPT_DATA_DIR/admin-credentials"
  python manage.py setup_demo
  python manage.py collectstatic --noinput -v 0
  exec gunicorn webapp.wsgi:application --bind "0.0.0.0:${PORT:-8000}" \
    --workers "${WEB_CONCURRENCY:-2}" --worker-class gthread --threads 4 --timeout 300 \
    --access-logfile - --error-logfile - --no-control-socket
  ;;
worker)
  exec celery -A workers.celery worker -Q "${INFEROPT_QUEUES:-cpu}" \
    --concurrency "${INFEROPT_WORKER_CONCURRENCY:-1}" --loglevel INFO
  ;;
*)
  exec "$@"
  ;;
esac
