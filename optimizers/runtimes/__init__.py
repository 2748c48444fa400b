"""Load an artifact into something that can run it (for evaluation and benchmarks).

``load_runtime(artifact)`` picks the adapter by format; every runtime reports
the device it runs on and its thread settings, so every measurement can say
where it was taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError


class Runtime(Protocol):
    """Runs an encoder: token arrays in, ``last_hidden_state`` (B, S, H) float32 out."""

    name: str
    device: str

    def forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...

    def threads(self) -> dict[str, Any]: ...


def load_runtime(artifact: ModelArtifact, *, threads: int | None = None, allow_spinning: bool = True) -> Runtime:
    """Open ``artifact`` with the runtime for its format.

    ``allow_spinning=False`` stops ONNX Runtime's idle threads from spinning,
    which matters when several runtimes share one process (evaluation).
    """
    if artifact.format == "hf":
        from optimizers.runtimes.torch_eager import TorchEagerRuntime

        return TorchEagerRuntime(artifact, threads=threads)
    if artifact.format == "onnx":
        from optimizers.runtimes.onnxruntime_cpu import OrtCpuRuntime

        return OrtCpuRuntime(artifact, threads=threads, allow_spinning=allow_spinning)
    raise PreflightError(f"no runtime for {artifact.format} artifacts yet")


def load_tokenizer(artifact: ModelArtifact) -> Any:
    """The tokenizer stored in the artifact's folder (never remote code)."""
    from transformers import AutoTokenizer

    folder = Path(artifact.path)
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
