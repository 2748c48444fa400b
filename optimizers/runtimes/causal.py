"""Causal language model runtimes: a common interface over PyTorch, llama.cpp and ONNX Runtime.

``CausalLMRuntime`` is what evaluation and the generation benchmark use:

- ``logits(ids)``: next-token logits at every position of one sequence, from a
  fresh context, as a float32 array ``(len(ids), vocab)``;
- ``prefill(ids)``: start a new sequence (KV cache cleared), return the logits
  after its last token; ``step(token)``: append one token, return the next logits.

Token ids always come from the baseline's Hugging Face tokenizer; a GGUF model
is fed the same ids (its own tokenizer is never used), so every variant is
scored on exactly the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError


class CausalLMRuntime(Protocol):
    name: str
    device: str
    vocab_size: int
    max_context: int

    def logits(self, ids: Sequence[int]) -> np.ndarray: ...

    def prefill(self, ids: Sequence[int]) -> np.ndarray: ...

    def step(self, token: int) -> np.ndarray: ...

    def threads(self) -> dict[str, Any]: ...


def load_causal_runtime(artifact: ModelArtifact, *, threads: int | None = None, context: int | None = None):
    """Open a causal LM artifact: ``hf`` → PyTorch eager, ``gguf`` → llama.cpp, ``onnx`` → ONNX Runtime (CPU).

    ``context`` is the longest sequence the caller will run (llama.cpp sizes its
    KV cache from it; default: the model's trained context).
    """
    if artifact.format == "hf":
        from optimizers.runtimes.torch_eager import TorchCausalRuntime

        return TorchCausalRuntime(artifact, threads=threads)
    if artifact.format == "gguf":
        from optimizers.runtimes.llama_cpp import LlamaCppRuntime

        return LlamaCppRuntime(artifact, threads=threads, context=context)
    if artifact.format == "onnx":
        from optimizers.onnx_safety import check_onnx_external_data
        from optimizers.runtimes.onnxruntime_causal import OrtCausalRuntime

        # ONNX Runtime follows external-data paths itself: refuse escaping ones first.
        check_onnx_external_data(artifact.onnx_file)
        return OrtCausalRuntime(artifact, threads=threads)
    raise PreflightError(f"no causal-LM runtime for {artifact.format} artifacts (hf, gguf and onnx are supported)")


def greedy_generate(
    runtime: CausalLMRuntime, prompt: Sequence[int], max_new_tokens: int, eos_id: int | None
) -> list[int]:
    """Greedy continuation of ``prompt`` (stops at ``eos_id``); the new token ids only."""
    limit = max(0, min(max_new_tokens, runtime.max_context - len(prompt)))
    if limit == 0:
        return []
    logits = runtime.prefill(prompt)
    generated: list[int] = []
    while True:
        token = int(np.argmax(logits))
        if eos_id is not None and token == eos_id:
            break
        generated.append(token)
        if len(generated) >= limit:
            break
        logits = runtime.step(token)
    return generated


__all__ = ["CausalLMRuntime", "greedy_generate", "load_causal_runtime"]
