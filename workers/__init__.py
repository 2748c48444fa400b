"""Celery workers for InferOpt.

``workers.celery`` holds the Celery app (configured from Django settings);
``workers.tasks`` the thin tasks that load a job row, run its recipe through
``optimizers`` and record the outcome. Start a worker with::

    celery -A workers.celery worker -Q cpu --concurrency 1 --loglevel INFO
"""
