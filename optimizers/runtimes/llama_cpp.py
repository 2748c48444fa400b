"""llama.cpp runtime (llama-cpp-python) for ``gguf`` artifacts, CPU only.

Logits come from llama.cpp itself (``Llama(logits_all=True)`` for per-position
logits in evaluation), never from re-loading the weights into PyTorch. Threads
default to the worker's cores (``os.sched_getaffinity``), for prompt and
generation alike.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError

GGUF_FILE = "model.gguf"
_DEFAULT_CONTEXT = 2048


def worker_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _trained_context(artifact: ModelArtifact) -> int:
    try:
        config = json.loads((artifact.folder / "config.json").read_text())
        return int(config.get("max_position_embeddings") or _DEFAULT_CONTEXT)
    except (OSError, ValueError, TypeError):
        return _DEFAULT_CONTEXT


class LlamaCppRuntime:
    """One ``llama_cpp.Llama`` per runtime; ``all_logits`` switches per-position logits on (evaluation)."""

    name = "llama.cpp"

    def __init__(
        self,
        artifact: ModelArtifact,
        *,
        threads: int | None = None,
        context: int | None = None,
        all_logits: bool = True,
        batch: int = 512,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise PreflightError("the llama.cpp runtime needs llama-cpp-python (pip install it)") from error
        path = artifact.folder / GGUF_FILE
        if not path.is_file():
            raise PreflightError(f"'{artifact.name}' has no {GGUF_FILE}")
        from optimizers.gguf_info import read_gguf

        read_gguf(path)  # validates the header (counts, dims, alignment) before llama.cpp parses it
        self.device = "cpu"
        self.max_context = context or _trained_context(artifact)
        self._threads = threads or worker_cores()
        self._all_logits = all_logits
        self.llm = Llama(
            model_path=str(path),
            n_ctx=self.max_context,
            n_batch=min(batch, self.max_context),
            n_ubatch=min(batch, self.max_context),
            n_threads=self._threads,
            n_threads_batch=self._threads,
            logits_all=all_logits,
            n_gpu_layers=0,
            verbose=False,
        )
        self.vocab_size = self.llm.n_vocab()

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        if not self._all_logits:
            raise RuntimeError("this LlamaCppRuntime was opened without all_logits")
        if len(ids) > self.max_context:
            raise ValueError(f"{len(ids)} tokens exceed the context of {self.max_context}")
        self.llm.reset()
        self.llm.eval(list(ids))
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(list(ids))
        return self._last_logits()

    def step(self, token: int) -> np.ndarray:
        self.llm.eval([int(token)])
        return self._last_logits()

    def _last_logits(self) -> np.ndarray:
        if self._all_logits:
            return np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)
        import llama_cpp

        # Only the last position's logits exist (logits_all=False): read them from the context.
        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), (self.vocab_size,)).copy()

    def threads(self) -> dict[str, Any]:
        return {"llama_cpp_threads": self._threads, "llama_cpp_batch_threads": self._threads}

    def close(self) -> None:
        self.llm.close()
