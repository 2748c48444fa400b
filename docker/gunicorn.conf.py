"""gunicorn settings for the container's ``web`` command (docker/entrypoint.sh).

The same server as ``make run`` (gthread, 2 processes x 4 threads, 300 s timeout), listening on all
interfaces inside the container; with the production profile's JSON logs (``INFEROPT_LOG_FORMAT``,
default ``json`` when ``INFEROPT_ENV=production``) gunicorn's error and access lines are JSON too.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 300
accesslog = "-"
errorlog = "-"
control_socket_disable = True

_production = os.environ.get("INFEROPT_ENV", "development").strip().lower() == "production"
if os.environ.get("INFEROPT_LOG_FORMAT", "json" if _production else "text").strip().lower() == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "webapp.logs.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }
