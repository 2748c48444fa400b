"""The Workers page: every registered worker, whether it is live, and what it can run."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from optimizers.passes import all_passes
from webapp.fleet.models import WorkerNode
from webapp.fleet.routing import pass_availability, registry_summary


@login_required
def worker_list(request):
    nodes = list(WorkerNode.objects.all())
    names = [technique.name for technique in all_passes()]
    unavailable = pass_availability(names)
    techniques = [
        {
            "name": name,
            "reason": unavailable.get(name, ""),
            "workers": [node.hostname for node in nodes if node.is_live and _runs(node, name)],
        }
        for name in names
    ]
    return render(
        request,
        "fleet/worker_list.html",
        {
            "nodes": nodes,
            "techniques": techniques,
            "summary": registry_summary(),
            "live_timeout_s": settings.INFEROPT_WORKER_LIVE_TIMEOUT_S,
            "heartbeat_s": settings.INFEROPT_WORKER_HEARTBEAT_S,
        },
    )


def _runs(node: WorkerNode, name: str) -> bool:
    verdict = (node.capabilities.get("passes") or {}).get(name) or {}
    return bool(verdict.get("runnable"))
