"""The worker capability registry: one row per Celery worker, kept current by its heartbeat.

``workers/heartbeat.py`` writes these rows (``WorkerNode.objects.record``); the web
process only reads them, to route jobs (``webapp/fleet/routing.py``) and to show the
Workers page. ``capabilities`` is ``optimizers.capabilities.probe()``'s dict.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


def live_timeout() -> timedelta:
    """How recent a heartbeat must be for its worker to count as live."""
    return timedelta(seconds=settings.INFEROPT_WORKER_LIVE_TIMEOUT_S)


class WorkerNodeQuerySet(models.QuerySet):
    def live(self, now=None) -> WorkerNodeQuerySet:
        """Workers that heartbeated within the timeout and did not say they stopped."""
        now = now or timezone.now()
        return self.filter(last_seen__gte=now - live_timeout(), stopped_at__isnull=True)

    def record(self, hostname: str, queues: list[str], capabilities: dict[str, Any], *, started: bool) -> WorkerNode:
        """Insert or refresh ``hostname``'s row (``started`` also resets ``started_at``)."""
        now = timezone.now()
        fields: dict[str, Any] = {
            "queues": sorted(set(queues)),
            "capabilities": capabilities,
            "last_seen": now,
            "stopped_at": None,
        }
        if started:
            fields["started_at"] = now
        node, created = self.update_or_create(hostname=hostname[:200], defaults=fields)
        if created and not started:
            self.filter(pk=node.pk).update(started_at=now)
        return node


class WorkerNode(models.Model):
    """One Celery worker (by its node name, e.g. ``celery@gpu-01``) and what it can run."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    capabilities = models.JSONField(default=dict)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)
    #: Set on a clean shutdown, so a stopped worker stops counting at once (not after the timeout).
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = WorkerNodeQuerySet.as_manager()

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    @property
    def is_live(self) -> bool:
        return self.stopped_at is None and self.last_seen >= timezone.now() - live_timeout()

    @property
    def state(self) -> str:
        """``live``, ``stopped`` or ``stale`` (no heartbeat within the timeout)."""
        if self.stopped_at is not None:
            return "stopped"
        return "live" if self.is_live else "stale"

    @property
    def gpus(self) -> list[dict[str, Any]]:
        return list(self.capabilities.get("gpus") or [])

    @property
    def cpu(self) -> dict[str, Any]:
        return dict(self.capabilities.get("cpu") or {})

    @property
    def memory_gb(self) -> float | None:
        total = (self.capabilities.get("memory") or {}).get("total_mb")
        return round(total / 1024, 1) if total else None

    @property
    def libraries(self) -> dict[str, str]:
        return dict(self.capabilities.get("libraries") or {})

    def pass_verdicts(self) -> list[tuple[str, bool, str]]:
        """``(pass name, runnable, reason)`` from the worker's own probe, by name."""
        passes = self.capabilities.get("passes") or {}
        return [(name, bool(v.get("runnable")), v.get("reason") or "") for name, v in sorted(passes.items())]
