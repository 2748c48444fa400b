"""Where does the time go? End-to-end split (pre / model / post) and the top operators.

Measure before optimizing: a profile says whether tokenization or pooling
matters next to the model, and which operators dominate (``torch.profiler``
for PyTorch, ONNX Runtime's own profiler for ONNX graphs). Like benchmarks,
profiles run in their own process (``benchmark.isolated`` with kind
``profile``) so other runtimes' threads do not distort them.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from optimizers.artifacts import ModelArtifact
from optimizers.benchmark.hardware import device_name
from optimizers.errors import PassError

#: The end-to-end stages, in pipeline order (``Profile.shares`` keys; charts show them in this order).
PROFILE_STAGES = ("preprocess", "model", "postprocess")


class OpTime(BaseModel):
    op: str
    self_ms: float  # per model call
    calls: int  # per model call
    share: float  # of the model's operator time


class Profile(BaseModel):
    runtime: str
    device: str
    batch_size: int
    seq_len: int
    iterations: int
    preprocess_ms: float
    model_ms: float
    postprocess_ms: float
    shares: dict[str, float] = Field(default_factory=dict)
    top_ops: list[OpTime] = Field(default_factory=list)


PROFILED_TASKS = ("feature-extraction",)


def profile_artifact(
    artifact: ModelArtifact, *, batch_size: int = 1, seq_len: int = 128, iterations: int = 10, top: int = 12
) -> Profile:
    """Profile ``artifact`` in this process (call it in a child process for clean numbers)."""
    if artifact.task not in PROFILED_TASKS:
        raise PassError(f"profiling for task {artifact.task} is not available yet")
    from optimizers.benchmark.encoder import encoder_io
    from optimizers.runtimes import load_runtime, load_tokenizer

    runtime = load_runtime(artifact)
    preprocess, postprocess = encoder_io(load_tokenizer(artifact), batch_size, seq_len)
    inputs = preprocess()
    postprocess(inputs, runtime.forward(inputs))  # warm-up
    phases: dict[str, list[float]] = {stage: [] for stage in PROFILE_STAGES}
    for _ in range(iterations):
        t0 = time.perf_counter()
        inputs = preprocess()
        t1 = time.perf_counter()
        hidden = runtime.forward(inputs)
        t2 = time.perf_counter()
        postprocess(inputs, hidden)
        t3 = time.perf_counter()
        phases["preprocess"].append(t1 - t0)
        phases["model"].append(t2 - t1)
        phases["postprocess"].append(t3 - t2)
    medians = {name: float(np.median(values)) * 1000.0 for name, values in phases.items()}
    total = sum(medians.values()) or 1.0
    ops = _torch_ops(runtime, inputs, iterations) if artifact.format == "hf" else _ort_ops(artifact, inputs, iterations)
    return Profile(
        runtime=runtime.name,
        device=device_name(runtime.device),
        batch_size=batch_size,
        seq_len=seq_len,
        iterations=iterations,
        preprocess_ms=medians["preprocess"],
        model_ms=medians["model"],
        postprocess_ms=medians["postprocess"],
        shares={name: value / total for name, value in medians.items()},
        top_ops=_top(ops, iterations, top),
    )


def _top(ops: dict[str, tuple[float, int]], iterations: int, top: int) -> list[OpTime]:
    """Per-call averages of (total µs, count) per op, largest first."""
    total = sum(us for us, _ in ops.values()) or 1.0
    ranked = sorted(ops.items(), key=lambda item: item[1][0], reverse=True)[:top]
    return [
        OpTime(op=name, self_ms=us / iterations / 1000.0, calls=round(count / iterations), share=us / total)
        for name, (us, count) in ranked
    ]


def _torch_ops(runtime, inputs: dict, iterations: int) -> dict[str, tuple[float, int]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iterations):
            runtime.forward(inputs)
    ops: dict[str, tuple[float, int]] = {}
    for event in prof.key_averages():
        if event.self_cpu_time_total > 0 and event.key.startswith(("aten::", "quantized::")):
            ops[event.key] = (float(event.self_cpu_time_total), int(event.count))
    return ops


def _ort_ops(artifact: ModelArtifact, inputs: dict, iterations: int) -> dict[str, tuple[float, int]]:
    import onnxruntime as ort

    from optimizers.onnx_safety import check_onnx_external_data
    from optimizers.runtimes.onnxruntime_cpu import session_options

    check_onnx_external_data(artifact.onnx_file)  # before ONNX Runtime follows any external-data path
    with tempfile.TemporaryDirectory(prefix="inferopt-ortprof-") as scratch:
        options = session_options(threads=None, allow_spinning=True)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "ort")
        session = ort.InferenceSession(
            str(artifact.onnx_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        feed = {item.name: inputs[item.name] for item in session.get_inputs()}
        session.run(None, feed)  # warm-up (allocation); profiled too, dropped below
        for _ in range(iterations):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [event for event in events if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")]
    # The warm-up run's node events come first; keep only the last `iterations` runs' worth.
    per_run = len(runs) // (iterations + 1) if runs else 0
    ops: dict[str, tuple[float, int]] = {}
    for event in runs[per_run:]:
        op = event.get("args", {}).get("op_name", "?")
        us, count = ops.get(op, (0.0, 0))
        ops[op] = (us + float(event.get("dur", 0)), count + 1)
    return ops
