"""PyTorch eager runtime for Hugging Face folders (FP32, or INT8 dynamic when stored so)."""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np
import torch

from optimizers.artifacts import ModelArtifact


class TorchEagerRuntime:
    """Encoder forward in PyTorch: FP32 eager on the CPU by default.

    The benchmark's runtime variants (``benchmark.variants``) also set ``device`` (``cuda``),
    ``dtype`` (``float16``/``bfloat16``), ``attention`` (a transformers ``attn_implementation``:
    ``eager``, ``sdpa``, ``flash_attention_2``) and ``compile`` (``torch.compile``). Inputs are
    copied to the device and the output back to the host inside ``forward``, which also makes
    each call synchronous on a GPU (the timing includes those copies).
    """

    name = "pytorch-eager"

    def __init__(
        self,
        artifact: ModelArtifact,
        *,
        threads: int | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        attention: str | None = None,
        compile: bool = False,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        model = load_torch_model(artifact, attention=attention)
        if device != "cpu":
            model = model.to(device)
        if dtype and dtype != "float32":
            model = model.to(getattr(torch, dtype))
        self.model = model
        self.device = device
        self.dtype = dtype or "float32"
        self.attention = getattr(model.config, "_attn_implementation", None) or attention or "default"
        self._input_names = set(inspect.signature(model.forward).parameters)
        self._call = torch.compile(model) if compile else model
        self._configured = bool(device != "cpu" or dtype or attention or compile)
        if compile:
            self.name = "pytorch-compile"
        #: Seconds of the first ``forward`` (with ``compile``: mostly compilation).
        self.first_call_s: float | None = None

    def forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {
            key: torch.from_numpy(value).to(self.device) for key, value in inputs.items() if key in self._input_names
        }
        started = time.perf_counter() if self.first_call_s is None else None
        with torch.inference_mode():
            output = self._call(**tensors).last_hidden_state.float().cpu().numpy()
        if started is not None:
            self.first_call_s = time.perf_counter() - started
        return output

    def threads(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
        }
        if self._configured:  # a benchmark runtime variant: say how it ran
            settings.update({"dtype": self.dtype, "attention": self.attention})
        return settings


def load_torch_model(artifact: ModelArtifact, *, attention: str | None = None) -> torch.nn.Module:
    """Load an ``hf`` artifact as an eval-mode module (INT8 dynamic artifacts rebuilt).

    ``attention`` picks transformers' ``attn_implementation`` (None: the library's default).
    """
    from optimizers.passes.torch_quantize_dynamic import QUANTIZED_MARKER, load_dynamic_int8

    if artifact.metadata.get("weights") == QUANTIZED_MARKER:
        return load_dynamic_int8(artifact.folder)
    from transformers import AutoModel

    options = {"attn_implementation": attention} if attention else {}
    model = AutoModel.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True, **options)
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
