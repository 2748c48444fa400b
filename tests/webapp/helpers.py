"""Helpers for web tests (importable; fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from django.test import Client

from webapp.accounts.models import ApiToken


@dataclass
class FakeCelery:
    """Records what would have been published; ``fail`` makes publishing raise."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    fail: Exception | None = None

    def send_task(self, name, args=None, **options):
        if self.fail:
            raise self.fail
        self.sent.append({"name": name, "args": args, **options})

    @property
    def control(self):
        return self

    def revoke(self, task_id, **kwargs):
        self.revoked.append(task_id)

    @contextlib.contextmanager
    def connection_for_write(self):
        """A broker connection that is always reachable (``cancel_job`` checks one before revoking)."""
        yield SimpleNamespace(ensure_connection=lambda **options: None)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_client_for(user) -> Client:
    """A client that authenticates with a fresh bearer token (no session)."""
    _, key = ApiToken.issue(user, "test")
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}")


def submit_recipe(user, recipe) -> Any:
    """POST ``recipe`` to the jobs API as ``user``; the response."""
    return api_client_for(user).post("/api/v1/jobs", data=json.dumps(recipe), content_type="application/json")


def sample_report() -> dict[str, Any]:
    """A report.json as the pipeline writes it: baseline, ONNX export, INT8 candidate."""

    def stats(batch: int, p50: float) -> dict[str, Any]:
        return {
            "batch_size": batch,
            "seq_len": 128,
            "iterations": 40,
            "seconds": 2.0,
            "p50_ms": p50,
            "p90_ms": p50 * 1.1,
            "p95_ms": p50 * 1.2,
            "p99_ms": p50 * 1.4,
            "mean_ms": p50 * 1.05,
            "stdev_ms": p50 * 0.05,
            "throughput_per_s": batch * 1000 / p50,
            "stable": True,
            "window_spread": 0.03,
            "preprocess_p50_ms": 0.2,
            "postprocess_p50_ms": 0.1,
        }

    def variant(name, fmt, size, p50, produced_by=None, metrics=None):
        return {
            "name": name,
            "format": fmt,
            "path": f"/work/{name}",
            "sha256": (name.encode().hex() * 64)[:64],
            "size_bytes": size,
            "produced_by": produced_by,
            "metrics": metrics or {},
            "benchmark": {"1": stats(1, p50), "8": stats(8, p50 * 5)},
        }

    return {
        "model": "zoo:minilm",
        "task": "feature-extraction",
        "recipe": {"model": "zoo:minilm", "steps": [{"pass": "onnx_export"}, {"pass": "ort_quantize_dynamic"}]},
        "variants": [
            variant("baseline", "hf", 90_000_000, 38.0, metrics={"cosine": 1.0, "recall@1": 0.82}),
            variant("onnx_export", "onnx", 90_500_000, 34.0, "onnx_export", {"cosine": 1.0, "recall@1": 0.82}),
            variant("ort_quantize_dynamic", "onnx", 23_000_000, 20.0, "ort_quantize_dynamic",
                    {"cosine": 0.993, "recall@1": 0.81}),
        ],
        "gate": {
            "outcome": "needs_approval",
            "rules": [
                {"metric": "cosine", "kind": "absolute_drop", "threshold": 0.01, "baseline": 1.0,
                 "candidate": 0.993, "passed": True, "detail": ""},
                {"metric": "recall@1", "kind": "absolute_drop", "threshold": 0.0, "baseline": 0.82,
                 "candidate": 0.81, "passed": False, "detail": "dropped 0.01"},
            ],
            "reasons": ["recall@1 dropped by 0.01 (> 0)"],
        },
    }  # fmt: skip


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def json_body(response) -> Any:
    return json.loads(response.content)


TINY_CONFIG = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 4}


def safetensors_bytes(header: dict | None = None, data: bytes = b"") -> bytes:
    """A safetensors file; by default one F32 tensor of shape [2, 2]."""
    import struct

    if header is None:
        header, data = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, b"\0" * 16
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def model_zip(entries: dict[str, bytes] | None = None, *, modes: dict[str, int] | None = None, **extra: bytes) -> bytes:
    """A zipped model folder: config.json + model.safetensors, changed by ``entries``/``extra``."""
    import stat

    if entries is None:
        entries = {"config.json": json.dumps(TINY_CONFIG).encode(), "model.safetensors": safetensors_bytes()}
    entries = {**entries, **extra}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (modes or {}).get(name, stat.S_IFREG | 0o644) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def files_under(folder) -> list[str]:
    """Every file below ``folder`` (relative paths), for "nothing was left behind" checks."""
    from pathlib import Path

    root = Path(folder)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())
