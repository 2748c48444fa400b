"""ONNX Runtime (CPU) for ``onnx`` causal-lm artifacts: the ``runtimes.causal`` interface.

The graph ``onnx_export`` writes for a causal LM takes ``input_ids`` and the KV
cache (``past_key_values.{i}.key`` / ``.value``, batch × kv-heads × past ×
head-dim) and returns ``logits`` and ``present.{i}.key`` / ``.value``. The
runtime keeps the presents between ``prefill`` and ``step``, so a decode step
runs one token against the cache.

A graph without cache inputs (exported elsewhere) still works: ``step`` then
recomputes the whole sequence every token, which is much slower and is
reported as ``kv_cache: False`` in ``threads()`` (and so in the benchmark's
runtime details). Graphs that also take ``attention_mask`` and/or
``position_ids`` (batch 1, no padding) are fed all-ones and consecutive
positions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError
from optimizers.runtimes.onnxruntime_cpu import _NUMPY_TYPES, OrtCpuSession

_PAST_PREFIX = "past_key_values."
_DEFAULT_CONTEXT = 2048


def _config(artifact: ModelArtifact) -> dict[str, Any]:
    try:
        return json.loads((artifact.folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}


class OrtCausalRuntime(OrtCpuSession):
    """One ``InferenceSession`` on the CPU execution provider, batch 1, float32 logits out."""

    def __init__(self, artifact: ModelArtifact, *, threads: int | None = None, allow_spinning: bool = True) -> None:
        super().__init__(artifact, threads=threads, allow_spinning=allow_spinning)
        inputs = {item.name: item for item in self.session.get_inputs()}
        outputs = [item.name for item in self.session.get_outputs()]
        if "input_ids" not in inputs or "logits" not in outputs:
            raise PreflightError(
                f"'{artifact.name}' is not a causal-LM ONNX graph (needs input_ids in, logits out; "
                f"has {sorted(inputs)} → {outputs})"
            )
        self._past_names = [name for name in inputs if name.startswith(_PAST_PREFIX)]
        self._present_names = [name.replace(_PAST_PREFIX, "present.", 1) for name in self._past_names]
        missing = [name for name in self._present_names if name not in outputs]
        if missing:
            raise PreflightError(f"'{artifact.name}' takes a KV cache but does not return {missing[0]}")
        self._past_specs = {name: self._empty_spec(inputs[name]) for name in self._past_names}
        self._ids_dtype = _NUMPY_TYPES.get(inputs["input_ids"].type, np.int64)
        self._extra = {
            name: _NUMPY_TYPES.get(inputs[name].type, np.int64)
            for name in ("attention_mask", "position_ids")
            if name in inputs
        }
        config = _config(artifact)
        self.vocab_size = int(config.get("vocab_size") or self.session.get_outputs()[0].shape[-1])
        self.max_context = int(config.get("max_position_embeddings") or _DEFAULT_CONTEXT)
        self.kv_cache = bool(self._past_names)
        self._past: dict[str, np.ndarray] = {}
        self._ids: list[int] = []

    @staticmethod
    def _empty_spec(item) -> tuple[tuple[int, int], np.dtype]:
        """(kv-heads, head-dim) and dtype of one cache input, read from the graph's static dimensions."""
        shape = item.shape
        if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
            raise PreflightError(f"cache input {item.name} has shape {shape}; expected batch × heads × past × dim")
        return (shape[1], shape[3]), np.dtype(_NUMPY_TYPES.get(item.type, np.float32))

    def _empty_past(self) -> dict[str, np.ndarray]:
        return {
            name: np.zeros((1, heads, 0, dim), dtype=dtype) for name, ((heads, dim), dtype) in self._past_specs.items()
        }

    def _run(self, ids: Sequence[int], past: dict[str, np.ndarray], past_length: int) -> np.ndarray:
        """Logits (len(ids) × vocab) of ``ids`` after ``past_length`` cached positions; keeps the presents."""
        if past_length + len(ids) > self.max_context:
            raise ValueError(f"{past_length + len(ids)} tokens exceed the context of {self.max_context}")
        feed: dict[str, np.ndarray] = {"input_ids": np.asarray([list(ids)], dtype=self._ids_dtype), **past}
        if "attention_mask" in self._extra:
            feed["attention_mask"] = np.ones((1, past_length + len(ids)), dtype=self._extra["attention_mask"])
        if "position_ids" in self._extra:
            positions = np.arange(past_length, past_length + len(ids))[None, :]
            feed["position_ids"] = positions.astype(self._extra["position_ids"])
        results = self.session.run(["logits", *self._present_names], feed)
        self._past = dict(zip(self._past_names, results[1:], strict=True))
        return results[0][0].astype(np.float32, copy=False)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        return self._run(ids, self._empty_past(), 0)

    def prefill(self, ids: Sequence[int]) -> np.ndarray:
        self._ids = [int(token) for token in ids]
        return self._run(self._ids, self._empty_past(), 0)[-1]

    def step(self, token: int) -> np.ndarray:
        if not self.kv_cache:  # no cache in the graph: recompute the whole sequence
            self._ids.append(int(token))
            return self._run(self._ids, {}, 0)[-1]
        past_length = len(self._ids)
        self._ids.append(int(token))
        return self._run([int(token)], self._past, past_length)[-1]

    def threads(self) -> dict[str, Any]:
        return {**super().threads(), "kv_cache": self.kv_cache}


__all__ = ["OrtCausalRuntime"]
