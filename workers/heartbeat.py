"""The worker's side of the capability registry: probe at start, then heartbeat.

``worker_ready`` (``workers/celery.py``) calls ``start(hostname, queues)``: it probes this
machine (``optimizers.capabilities.probe``; GPUs in a child process, so the prefork parent
never initialises CUDA), writes the ``WorkerNode`` row, and starts one daemon thread that
re-probes and rewrites the row every ``INFEROPT_WORKER_HEARTBEAT_S`` seconds. The thread
lives in the parent only (forked children do not inherit threads) and survives any error:
a failed beat is logged and retried on the next one, so a database hiccup costs at most
a stale row, never the worker. ``worker_shutdown`` calls ``stop()``, which marks the row
stopped so routing stops counting it at once.

Each beat also runs the lost-job sweep (``webapp.jobs.services.mark_lost_jobs``): jobs left
``running`` by a worker whose own heartbeat stopped are failed as lost, so while any worker
lives, no job stays "running" on a dead one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from optimizers.capabilities import gpu_info_isolated, probe

logger = logging.getLogger(__name__)


class Heartbeat:
    """Probe once, record, then re-record every ``interval`` seconds until ``stop()``."""

    def __init__(self, hostname: str, queues: list[str], interval: float) -> None:
        self.hostname = hostname
        self.queues = sorted(set(queues))
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # GPUs do not change while a worker runs; probing them costs a child interpreter with torch.
        self._gpus: list[dict[str, Any]] | None = None

    def probe(self) -> dict[str, Any]:
        if self._gpus is None:
            self._gpus = gpu_info_isolated()
        return probe(hostname=self.hostname, queues=self.queues, gpus=self._gpus)

    def beat(self, *, started: bool = False) -> None:
        """Probe and write the row (raises on failure; the loop catches)."""
        from webapp.fleet.models import WorkerNode

        WorkerNode.objects.record(self.hostname, self.queues, self.probe(), started=started)

    def start(self) -> None:
        try:
            self.beat(started=True)
        except Exception:
            logger.exception("could not register worker %s in the capability registry", self.hostname)
        finally:
            connection.close()  # the thread below uses its own connection
        self._thread = threading.Thread(target=self._run, name="inferopt-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                close_old_connections()
                self.beat()
                self.sweep()
            except Exception:
                logger.warning(
                    "heartbeat of worker %s failed; retrying in %s s", self.hostname, self.interval, exc_info=True
                )
            finally:
                connection.close()

    def sweep(self) -> int:
        """Fail the jobs of workers whose heartbeat stopped (raises on failure; the loop catches)."""
        from webapp.jobs.services import mark_lost_jobs

        return mark_lost_jobs()

    def stop(self) -> None:
        """Stop beating and mark the row stopped (best effort)."""
        self._stop.set()
        try:
            from webapp.fleet.models import WorkerNode

            WorkerNode.objects.filter(hostname=self.hostname[:200]).update(stopped_at=timezone.now())
        except Exception:
            logger.warning("could not mark worker %s stopped", self.hostname, exc_info=True)
        finally:
            connection.close()


_current: Heartbeat | None = None


def start(hostname: str, queues: list[str]) -> Heartbeat:
    """Register this worker and start its heartbeat (once per process)."""
    global _current
    if _current is None:
        _current = Heartbeat(hostname, queues, float(settings.INFEROPT_WORKER_HEARTBEAT_S))
        _current.start()
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        _current.stop()
        _current = None
