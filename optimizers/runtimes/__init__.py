"""Load an artifact into something that can run it (for evaluation and benchmarks).

``load_runtime(artifact)`` picks the adapter by format; every runtime reports
the device it runs on and its thread settings, so every measurement can say
where it was taken.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError


class Runtime(Protocol):
    """Runs a model on named numpy inputs and returns its main output as float32.

    Encoders: token arrays in, ``last_hidden_state`` (B, S, H) out. Image
    classifiers: ``pixel_values`` (N, C, H, W) float32 in, logits (N, classes) out.
    """

    name: str
    device: str

    def forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...

    def threads(self) -> dict[str, Any]: ...


def load_runtime(artifact: ModelArtifact, *, threads: int | None = None, allow_spinning: bool = True) -> Runtime:
    """Open ``artifact`` with the runtime for its format.

    ``allow_spinning=False`` stops ONNX Runtime's idle threads from spinning,
    which matters when several runtimes share one process (evaluation).
    An ONNX artifact whose external data points outside its folder raises
    ``UnsafeInputError`` before ONNX Runtime opens it.
    """
    if artifact.format == "hf":
        from optimizers.runtimes.torch_eager import TorchEagerRuntime

        return TorchEagerRuntime(artifact, threads=threads)
    if artifact.format == "torch":
        from optimizers.runtimes.torch_module import TorchModuleRuntime

        return TorchModuleRuntime(artifact, threads=threads)
    if artifact.format == "onnx":
        from optimizers.onnx_safety import check_onnx_external_data
        from optimizers.runtimes.onnxruntime_cpu import OrtCpuRuntime

        # ONNX Runtime follows external-data paths itself: refuse escaping ones first.
        check_onnx_external_data(artifact.onnx_file)
        provider = os.environ.get("INFEROPT_ORT_PROVIDER", "cpu")
        if provider != "cpu":  # a GPU worker's choice: cuda or tensorrt (needs onnxruntime-gpu)
            from optimizers.runtimes.onnxruntime_gpu import OrtGpuRuntime

            return OrtGpuRuntime(artifact, provider=provider)
        return OrtCpuRuntime(artifact, threads=threads, allow_spinning=allow_spinning)
    if artifact.format == "tensorrt":
        from optimizers.runtimes.tensorrt_gpu import TensorRTRuntime

        return TensorRTRuntime(artifact)  # refuses an engine built for another GPU
    if artifact.format == "openvino":
        from optimizers.runtimes.openvino_cpu import OpenVinoCpuRuntime

        return OpenVinoCpuRuntime(artifact, threads=threads, allow_spinning=allow_spinning)
    raise PreflightError(f"no runtime for {artifact.format} artifacts yet")


def load_tokenizer(artifact: ModelArtifact) -> Any:
    """The tokenizer stored in the artifact's folder (never remote code)."""
    from transformers import AutoTokenizer

    folder = Path(artifact.path)
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
