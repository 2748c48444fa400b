"""The Celery app: configured from Django settings (``CELERY_*``), broker = Redis.

The web process imports only this module's ``app`` (configuration, no tasks) to
send ``inferopt.run_job`` by name. Workers start with
``celery -A workers.celery worker -Q cpu``.
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("inferopt")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])

logger = logging.getLogger(__name__)


@worker_ready.connect
def log_worker_queues(sender, **kwargs) -> None:
    """Register this worker's capabilities, say which queues it consumes, fail its orphaned jobs."""
    queues = sorted(queue.name for queue in getattr(sender.task_consumer, "queues", []))
    # Register before saying "ready": once the line is logged, the Workers page and routing see it.
    from workers import heartbeat

    heartbeat.start(sender.hostname, queues)
    logger.info("worker %s ready, consuming queues: %s", sender.hostname, ", ".join(queues) or "(none)")
    from workers.tasks import fail_orphaned_jobs

    orphans = fail_orphaned_jobs(sender.hostname)
    if orphans:
        logger.warning("marked %d job(s) failed that this worker was running when it stopped", orphans)


@worker_shutdown.connect
def mark_worker_stopped(sender=None, **kwargs) -> None:
    """Stop the capability heartbeat and mark this worker stopped in the registry."""
    from workers import heartbeat

    heartbeat.stop()
