"""A real Celery worker registers its capabilities, heartbeats, and shows on the Workers page."""

from __future__ import annotations

import time

import pytest

from tests.support.services import CeleryWorker
from tests.webapp.helpers import client_for
from webapp.fleet.models import WorkerNode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def registered(worker: CeleryWorker, timeout: float = 30.0) -> WorkerNode:
    """The worker's row (its node name is ``test-xxxx@<host>``); heartbeats re-create it after a flush."""
    prefix = worker.hostname.split("@")[0] + "@"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = WorkerNode.objects.filter(hostname__startswith=prefix).first()
        if node is not None:
            return node
        time.sleep(0.5)
    raise AssertionError(f"worker {worker.hostname} never registered:\n{worker.log_tail()}")


def test_worker_registers_its_capabilities(celery_worker):
    node = registered(celery_worker)
    assert node.is_live and node.queues == ["cpu"]
    capabilities = node.capabilities
    assert capabilities["gpus"] == []  # probed in a child process: this machine has no GPU
    assert capabilities["cpu"]["logical_cores"] >= 1
    assert capabilities["passes"]["onnx_export"]["runnable"] is True
    assert capabilities["passes"]["tensorrt_build"] == {
        "runnable": False,
        "reason": "needs a CUDA GPU; this worker has none",
    }


def test_heartbeat_keeps_last_seen_moving(celery_worker):
    first = registered(celery_worker).last_seen
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        node = WorkerNode.objects.filter(hostname__startswith=celery_worker.hostname.split("@")[0]).first()
        if node is not None and node.last_seen > first:
            return
        time.sleep(0.5)
    raise AssertionError("no heartbeat within 20 s (INFEROPT_WORKER_HEARTBEAT_S=5)")


def test_registered_worker_appears_on_the_workers_page(celery_worker, django_user_model):
    node = registered(celery_worker)
    user = django_user_model.objects.create_user("watcher")
    page = client_for(user).get("/workers/").content.decode()
    assert node.hostname in page
    assert "Jobs are routed by capability: 1 live worker" in page
    assert "needs a CUDA GPU; this worker has none" in page
