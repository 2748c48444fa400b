"""PyTorch eager runtime for Hugging Face folders (FP32, or INT8 dynamic when stored so)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from optimizers.artifacts import ModelArtifact


class TorchEagerRuntime:
    name = "pytorch-eager"

    def __init__(self, artifact: ModelArtifact, *, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model = load_torch_model(artifact)
        self.device = "cpu"
        self._input_names = set(inspect.signature(self.model.forward).parameters)

    def forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {key: torch.from_numpy(value) for key, value in inputs.items() if key in self._input_names}
        with torch.inference_mode():
            return self.model(**tensors).last_hidden_state.float().numpy()

    def threads(self) -> dict[str, Any]:
        return {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads()}


def load_torch_model(artifact: ModelArtifact) -> torch.nn.Module:
    """Load an ``hf`` artifact as an eval-mode module (INT8 dynamic artifacts rebuilt)."""
    from optimizers.passes.torch_quantize_dynamic import QUANTIZED_MARKER, load_dynamic_int8

    if artifact.metadata.get("weights") == QUANTIZED_MARKER:
        return load_dynamic_int8(artifact.folder)
    from transformers import AutoModel

    model = AutoModel.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True)
    return model.eval()
