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


class TorchCausalRuntime:
    """PyTorch eager for causal LMs (``AutoModelForCausalLM``; see ``runtimes.causal`` for the interface).

    ``prefill``/``step`` keep the model's KV cache between calls (greedy decoding
    and the generation benchmark); ``logits`` runs one sequence without a cache.
    """

    name = "pytorch-eager"

    def __init__(self, artifact: ModelArtifact, *, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model = load_causal_lm(artifact)
        self.device = "cpu"
        config = self.model.config
        self.vocab_size = int(config.vocab_size)
        self.max_context = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        self._past = None

    def logits(self, ids) -> np.ndarray:
        with torch.inference_mode():
            output = self.model(input_ids=torch.tensor([list(ids)], dtype=torch.long), use_cache=False)
        return output.logits[0].float().numpy()

    def prefill(self, ids) -> np.ndarray:
        with torch.inference_mode():
            output = self.model(input_ids=torch.tensor([list(ids)], dtype=torch.long), use_cache=True)
        self._past = output.past_key_values
        return output.logits[0, -1].float().numpy()

    def step(self, token: int) -> np.ndarray:
        with torch.inference_mode():
            output = self.model(
                input_ids=torch.tensor([[int(token)]], dtype=torch.long), past_key_values=self._past, use_cache=True
            )
        self._past = output.past_key_values
        return output.logits[0, -1].float().numpy()

    def threads(self) -> dict[str, Any]:
        return {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads()}


def load_causal_lm(artifact: ModelArtifact) -> torch.nn.Module:
    """Load an ``hf`` causal LM as an eval-mode ``AutoModelForCausalLM`` (INT8 dynamic artifacts rebuilt)."""
    from optimizers.passes.torch_quantize_dynamic import QUANTIZED_MARKER, load_dynamic_int8

    if artifact.metadata.get("weights") == QUANTIZED_MARKER:
        return load_dynamic_int8(artifact.folder)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True)
    return model.eval()
