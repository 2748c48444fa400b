"""Benchmark for image classifiers: normalise raw pixels → model → softmax/argmax, each timed.

Inputs are real held-out digits (raw 0..16 pixels, cycled to the batch size);
pre-processing (the division into [0, 1] and the NCHW reshape) and
post-processing (softmax and top-1) are timed apart from the model. Images have
no sequence axis: ``LatencyStats.seq_len`` is 0 for these rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from optimizers.artifacts import ModelArtifact
from optimizers.recipe import BenchmarkSettings
from optimizers.report import BenchmarkInfo, LatencyStats


def image_input_shape(artifact: ModelArtifact) -> tuple[int, int, int]:
    """(C, H, W) one image must have for ``artifact``: ``config.json``'s ``input_shape``, else the ONNX graph's."""
    import json

    try:
        shape = json.loads((artifact.folder / "config.json").read_text()).get("input_shape")
        if isinstance(shape, list) and len(shape) == 3:
            return tuple(int(v) for v in shape)  # type: ignore[return-value]
    except (OSError, ValueError):
        pass
    if artifact.format == "onnx":
        import onnx

        dims = onnx.load(str(artifact.onnx_file), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        values = [dim.dim_value for dim in dims[1:]]
        if len(values) == 3 and all(values):
            return tuple(values)  # type: ignore[return-value]
    return (1, 8, 8)


def image_io(batch_size: int, shape: tuple[int, int, int]) -> tuple[Callable[[], dict], Callable[[dict, Any], Any]]:
    """(preprocess, postprocess) for a fixed batch of held-out digits resized by tiling to ``shape``."""
    from optimizers.evaluation.images import PIXEL_MAX, digits_raw_split

    raw = digits_raw_split("eval")
    picks = raw[np.arange(batch_size) % len(raw)].astype(np.uint8)
    channels, height, width = shape
    if (channels, height, width) != (1, 8, 8):  # another image size: tile the digits to fill it
        reps = (1, channels, -(-height // 8), -(-width // 8))
        picks = np.tile(picks[:, None], reps)[:, :channels, :height, :width]

    def preprocess() -> dict:
        pixels = picks.astype(np.float32).reshape(batch_size, channels, height, width) / np.float32(PIXEL_MAX)
        return {"pixel_values": pixels}

    def postprocess(inputs: dict, logits: Any) -> Any:
        shifted = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        return probabilities.argmax(axis=1), probabilities.max(axis=1)

    return preprocess, postprocess


def measure_image_classifier(
    artifact: ModelArtifact, settings: BenchmarkSettings
) -> tuple[dict[str, LatencyStats], BenchmarkInfo]:
    """Time ``artifact`` in this process at each batch size (image-classification)."""
    from optimizers.benchmark.harness import measure_batches
    from optimizers.runtimes import load_runtime

    runtime = load_runtime(artifact, threads=settings.threads)
    shape = image_input_shape(artifact)
    return measure_batches(runtime, settings, lambda batch: image_io(batch, shape), seq_len=0)
