"""A fixed report.json for tests of code that reads reports (cost, model cards, Pareto).

Round numbers, so expected costs can be worked out by hand: at batch 8 the
baseline does 40 items/s, the ONNX export 50 and the INT8 candidate 100.
"""

from __future__ import annotations

from typing import Any

DEVICE = "cpu: Intel(R) Xeon(R) Platinum 8488C (2 logical cores)"


def stats(batch: int, p50_ms: float) -> dict[str, Any]:
    return {
        "batch_size": batch, "seq_len": 128, "iterations": 40, "seconds": 2.0, "p50_ms": p50_ms,
        "p90_ms": p50_ms * 1.1, "p95_ms": p50_ms * 1.2, "p99_ms": p50_ms * 1.4, "mean_ms": p50_ms,
        "stdev_ms": 1.0, "throughput_per_s": batch * 1000 / p50_ms, "stable": True, "window_spread": 0.02,
        "preprocess_p50_ms": 0.1, "postprocess_p50_ms": 0.1,
    }  # fmt: skip


def variant(name: str, fmt: str, size: int, p50: dict[int, float], metrics: dict[str, float], **extra: Any):
    return {
        "name": name,
        "format": fmt,
        "path": f"/work/{name}",
        "sha256": (name.encode().hex() * 64)[:64],
        "size_bytes": size,
        "metrics": metrics,
        "benchmark": {str(batch): stats(batch, ms) for batch, ms in p50.items()},
        "benchmark_info": {"runtime": "onnxruntime-cpu", "device": DEVICE, "threads": {"intra_op": 2}},
        **extra,
    }


def gate(outcome: str, candidate: float) -> dict[str, Any]:
    return {
        "outcome": outcome,
        "rules": [{"metric": "cosine", "kind": "absolute_drop", "threshold": 0.01, "baseline": 1.0,
                   "candidate": candidate, "passed": outcome != "fail", "detail": ""}],
        "reasons": [],
    }  # fmt: skip


def fixed_report() -> dict[str, Any]:
    return {
        "model": "zoo:minilm",
        "task": "feature-extraction",
        "recipe": {
            "model": "zoo:minilm",
            "steps": [{"pass": "onnx_export", "opset": 18}, {"pass": "ort_quantize_dynamic", "per_channel": True}],
            "evaluation": {"max_samples": 8},
        },
        "variants": [
            variant("baseline", "hf", 90 * 2**20, {1: 20.0, 8: 200.0}, {"cosine": 1.0, "recall_at_1": 0.5}),
            variant(
                "onnx_export", "onnx", 91 * 2**20, {1: 16.0, 8: 160.0}, {"cosine": 1.0, "recall_at_1": 0.5},
                produced_by="onnx_export", parent_sha256="aa" * 32, config={"opset": 18}, gate=gate("pass", 1.0),
            ),
            variant(
                "ort_quantize_dynamic", "onnx", 23 * 2**20, {1: 8.0, 8: 80.0},
                {"cosine": 0.993, "cosine_ci_low": 0.99, "cosine_ci_high": 0.995, "recall_at_1": 0.49},
                produced_by="ort_quantize_dynamic", parent_sha256="bb" * 32, gate=gate("needs_approval", 0.993),
            ),
        ],
        "gate": gate("needs_approval", 0.993),
        "environment": {
            "python": "3.11.2",
            "platform": "Linux-6.1-x86_64",
            "library_versions": {"onnxruntime": "1.23.2", "torch": "2.13.0"},
            "quick_benchmark": False,
        },
        "timings": {"total_s": 120.0},
    }  # fmt: skip
