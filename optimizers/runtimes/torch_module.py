"""PyTorch eager runtime for ``torch`` artifacts (InferOpt-native modules, e.g. ``zoo:digits-cnn``).

``forward({"pixel_values": N×C×H×W float32}) -> logits (N, classes) float32``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from optimizers.artifacts import ModelArtifact
from optimizers.models import load_torch_module, read_torch_config

#: Name of the image input, shared with the ONNX export of these modules.
IMAGE_INPUT = "pixel_values"


class TorchModuleRuntime:
    name = "pytorch-eager"

    def __init__(self, artifact: ModelArtifact, *, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model = load_torch_module(artifact)
        self.config = read_torch_config(artifact)
        self.device = "cpu"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape (C, H, W), from ``config.json``."""
        return tuple(int(v) for v in self.config.get("input_shape", (1, 8, 8)))

    def forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        pixels = torch.from_numpy(np.ascontiguousarray(inputs[IMAGE_INPUT], dtype=np.float32))
        with torch.inference_mode():
            return self.model(pixels).float().numpy()

    def threads(self) -> dict[str, Any]:
        return {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads()}
