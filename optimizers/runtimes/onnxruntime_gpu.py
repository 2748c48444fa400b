"""ONNX Runtime on a GPU: the CUDA or TensorRT execution provider (needs ``onnxruntime-gpu``).

Chosen by ``load_runtime`` for ONNX artifacts when the worker sets ``INFEROPT_ORT_PROVIDER``
to ``cuda`` or ``tensorrt``. The CPU build of onnxruntime has neither provider: asking for
one there is a ``PreflightError`` that says so (never a silent fall-back to the CPU, which
would mislabel every measurement). Not run here (no GPU, no onnxruntime-gpu); ``tests/gpu``
covers it where the providers exist.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError
from optimizers.runtimes.onnxruntime_cpu import OrtCpuRuntime, session_options

PROVIDERS = {
    "cuda": ["CUDAExecutionProvider"],
    # TensorRT EP compiles subgraphs it supports; the rest falls back to CUDA.
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
}


def missing_providers(provider: str, available: list[str] | None = None) -> list[str]:
    """Execution providers ``provider`` needs that this onnxruntime build lacks."""
    if provider not in PROVIDERS:
        raise PreflightError(f"unknown ONNX Runtime GPU provider {provider!r}; use one of {', '.join(PROVIDERS)}")
    available = ort.get_available_providers() if available is None else available
    return [name for name in PROVIDERS[provider] if name not in available]


class OrtGpuRuntime(OrtCpuRuntime):
    """``OrtCpuRuntime``'s interface on ``CUDAExecutionProvider`` / ``TensorrtExecutionProvider``."""

    def __init__(self, artifact: ModelArtifact, *, provider: str = "cuda") -> None:
        missing = missing_providers(provider)
        if missing:
            raise PreflightError(
                f"ONNX Runtime here lacks {', '.join(missing)} (install onnxruntime-gpu from requirements-gpu.txt; "
                f"available: {', '.join(ort.get_available_providers())})"
            )
        self.name = f"onnxruntime-{provider}"
        self._threads = None
        self._allow_spinning = False
        self.session = ort.InferenceSession(
            str(artifact.onnx_file),
            sess_options=session_options(threads=None, allow_spinning=False),
            providers=PROVIDERS[provider],
        )
        self.device = "cuda"
        self._input_names = [item.name for item in self.session.get_inputs()]
        from optimizers.runtimes.onnxruntime_cpu import _NUMPY_TYPES

        self._input_dtypes = {item.name: _NUMPY_TYPES.get(item.type, np.int64) for item in self.session.get_inputs()}
        self._output_name = self.session.get_outputs()[0].name

    def threads(self) -> dict[str, Any]:
        return {"providers": self.session.get_providers()}
