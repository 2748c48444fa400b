"""Time one variant in a fresh Python process and read its result back.

``measure_isolated`` is what the pipeline calls (``benchmark_isolated`` is the
same without LLM generation stats); ``main`` is the child's
entry point (``python -m optimizers.benchmark.isolated IN.json OUT.json``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError
from optimizers.recipe import BenchmarkSettings
from optimizers.report import BenchmarkInfo, GenerationStats, LatencyStats


def run_in_child(module: str, request: dict, *, what: str, timeout_s: float) -> dict:
    """Run ``python -m module request.json result.json`` in a fresh interpreter and return the
    JSON it wrote. Timings taken in a child are not distorted by this process's thread pools.
    ``PassError`` naming ``what`` with the child's output tail when it fails."""
    with tempfile.TemporaryDirectory(prefix="inferopt-bench-") as scratch:
        request_file, result = Path(scratch) / "request.json", Path(scratch) / "result.json"
        request_file.write_text(json.dumps(request))
        completed = subprocess.run(
            [sys.executable, "-m", module, str(request_file), str(result)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        if completed.returncode != 0 or not result.exists():
            tail = (completed.stderr or completed.stdout)[-2000:]
            raise PassError(f"{what} failed (exit {completed.returncode}): {tail}")
        return json.loads(result.read_text())


def _run_child(kind: str, payload: dict, *, label: str, timeout_s: float) -> dict:
    """Run ``main`` with ``{"kind": kind, **payload}`` in a fresh interpreter; return its JSON result."""
    return run_in_child(
        "optimizers.benchmark.isolated", {"kind": kind, **payload}, what=f"{kind} of {label}", timeout_s=timeout_s
    )


class Measurement(NamedTuple):
    """What one isolated benchmark gives: per-batch latency, where it ran, and LLM generation speed."""

    stats: dict[str, LatencyStats]
    info: BenchmarkInfo
    generation: GenerationStats | None = None
    #: Plain sentences for the report (e.g. batch sizes a TensorRT engine's profile cannot run).
    notes: tuple[str, ...] = ()


def measure_isolated(artifact: ModelArtifact, settings: BenchmarkSettings, *, timeout_s: float = 3600.0) -> Measurement:
    """Run ``measure`` for ``artifact`` in a child process; ``PassError`` if it fails."""
    payload = {"artifact": artifact.model_dump(), "settings": settings.model_dump()}
    data = _run_child("benchmark", payload, label=artifact.name, timeout_s=timeout_s)
    stats = {key: LatencyStats.model_validate(value) for key, value in data["stats"].items()}
    generation = GenerationStats.model_validate(data["generation"]) if data.get("generation") else None
    return Measurement(stats, BenchmarkInfo.model_validate(data["info"]), generation, tuple(data.get("notes") or ()))


def benchmark_isolated(
    artifact: ModelArtifact, settings: BenchmarkSettings, *, timeout_s: float = 3600.0
) -> tuple[dict[str, LatencyStats], BenchmarkInfo]:
    """``measure_isolated`` without the generation stats: (per-batch latency, info)."""
    measured = measure_isolated(artifact, settings, timeout_s=timeout_s)
    return measured.stats, measured.info


def profile_isolated(artifact: ModelArtifact, *, batch_size: int, seq_len: int, timeout_s: float = 1800.0):
    """``profiling.profile_artifact`` in a child process; returns a ``Profile``."""
    from optimizers.profiling import Profile

    payload = {"artifact": artifact.model_dump(), "batch_size": batch_size, "seq_len": seq_len}
    return Profile.model_validate(_run_child("profile", payload, label=artifact.name, timeout_s=timeout_s))


def measure(artifact: ModelArtifact, settings: BenchmarkSettings) -> Measurement:
    """Time ``artifact`` in this process with the benchmark for its task.

    A TensorRT engine is timed only at the batch sizes its optimization profile accepts
    (``tensorrt_build.clamp_batch_sizes``); the dropped ones are named in ``notes``.
    """
    notes: tuple[str, ...] = ()
    if artifact.format == "tensorrt":
        from optimizers.passes.tensorrt_build import clamp_batch_sizes
        from optimizers.runtimes.tensorrt_gpu import engine_metadata_of

        batch_sizes, notes = clamp_batch_sizes(settings.batch_sizes, engine_metadata_of(artifact))
        settings = settings.model_copy(update={"batch_sizes": batch_sizes})
    return _measure_task(artifact, settings)._replace(notes=tuple(notes))


def _measure_task(artifact: ModelArtifact, settings: BenchmarkSettings) -> Measurement:
    if artifact.task == "feature-extraction":
        from optimizers.benchmark.encoder import measure_encoder

        return Measurement(*measure_encoder(artifact, settings))
    if artifact.task == "causal-lm":
        from optimizers.benchmark.generation import measure_generation

        return Measurement(*measure_generation(artifact, settings))
    if artifact.task == "image-classification":
        from optimizers.benchmark.images import measure_image_classifier

        return Measurement(*measure_image_classifier(artifact, settings))
    raise PassError(f"benchmarks for task {artifact.task} are not available yet")


def measure_variant(
    artifact: ModelArtifact, settings: BenchmarkSettings
) -> tuple[dict[str, LatencyStats], BenchmarkInfo]:
    """``measure`` without the generation stats."""
    measured = measure(artifact, settings)
    return measured.stats, measured.info


def main(argv: list[str]) -> int:
    request_path, result_path = Path(argv[0]), Path(argv[1])
    request = json.loads(request_path.read_text())
    artifact = ModelArtifact.model_validate(request["artifact"])
    if request.get("kind") == "profile":
        from optimizers.profiling import profile_artifact

        profile = profile_artifact(artifact, batch_size=request["batch_size"], seq_len=request["seq_len"])
        result_path.write_text(profile.model_dump_json())
        return 0
    if request.get("kind") == "runtime_variant":
        from optimizers.benchmark.variants import measure_variant_here

        settings = BenchmarkSettings.model_validate(request["settings"])
        result = measure_variant_here(artifact, settings, request["variant"], request["device"])
        result_path.write_text(json.dumps(result))
        return 0
    stats, info, generation, notes = measure(artifact, BenchmarkSettings.model_validate(request["settings"]))
    result = {"stats": {k: v.model_dump() for k, v in stats.items()}, "info": info.model_dump(), "notes": list(notes)}
    if generation is not None:
        result["generation"] = generation.model_dump()
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
