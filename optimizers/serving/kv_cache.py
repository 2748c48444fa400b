"""KV-cache memory and the decode roofline, computed from a model's config (no weights loaded).

A decoder keeps, per layer, one key and one value vector per KV head per token:

    kv_bytes = 2 × layers × kv_heads × head_dim × cached_tokens × batch × dtype_bytes

``cached_tokens`` is the context length, bounded by the sliding window on
layers that use one. Grouped-query attention (GQA) shares each KV head among
``heads / kv_heads`` query heads, so it divides the cache by that factor;
multi-query attention (MQA) is the extreme of one KV head; multi-head attention
(MHA) has ``kv_heads == heads``.

Decoding is memory-bound: each step reads every weight once plus the whole KV
cache of every sequence in the batch, so

    tokens/s (all sequences) ≤ batch × bandwidth / (weight_bytes + batch × kv_bytes_per_sequence)

``measure_copy_bandwidth`` gives a bandwidth for this machine (a large buffer
copy, STREAM's "copy" convention: bytes read + bytes written per second).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from optimizers.errors import RecipeError

#: Bytes per element of the dtypes configs name (``dtype`` / ``torch_dtype``) or callers ask for.
DTYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "bfloat16": 2,
    "bf16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}

AttentionKind = Literal["MHA", "GQA", "MQA"]


class AttentionShape(BaseModel):
    """The sizes of a decoder's attention that decide its KV cache (read from a HF config)."""

    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    #: Tokens a windowed layer keeps (None: no sliding window).
    sliding_window: int | None = Field(None, ge=1)
    #: Layers that use the window (the rest attend to the whole context); all of them when
    #: the config has a window but no per-layer ``layer_types``.
    sliding_layers: int = Field(0, ge=0)
    max_position_embeddings: int | None = None
    dtype: str = "float32"

    @property
    def kind(self) -> AttentionKind:
        if self.num_kv_heads == self.num_heads:
            return "MHA"
        return "MQA" if self.num_kv_heads == 1 else "GQA"


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype`` (``float16``, ``bf16``, ``int8``, ...); ``RecipeError`` if unknown."""
    key = str(dtype).removeprefix("torch.").lower()
    if key not in DTYPE_BYTES:
        raise RecipeError(f"unknown KV-cache dtype '{dtype}'; known: {', '.join(sorted(DTYPE_BYTES))}")
    return DTYPE_BYTES[key]


def attention_shape(config: Mapping[str, Any]) -> AttentionShape:
    """``AttentionShape`` of a Hugging Face decoder config (``config.json`` as a mapping).

    Reads ``num_hidden_layers``, ``num_attention_heads``, ``num_key_value_heads``
    (absent: MHA), ``head_dim`` (absent: ``hidden_size // num_attention_heads``),
    ``sliding_window`` (ignored when ``use_sliding_window`` is false) and
    ``layer_types`` (how many layers are ``sliding_attention``), the dtype from
    ``dtype``/``torch_dtype`` (absent: float32). Multimodal configs are read through
    their ``text_config``. Raises ``RecipeError`` naming a missing size.
    """
    if isinstance(config.get("text_config"), Mapping):
        config = {**config["text_config"], **{k: v for k, v in config.items() if k in ("dtype", "torch_dtype")}}

    def first(*names: str) -> Any:
        for name in names:
            if config.get(name) is not None:
                return config[name]
        return None

    layers = first("num_hidden_layers", "n_layer", "num_layers")
    heads = first("num_attention_heads", "n_head", "num_heads")
    if layers is None or heads is None:
        raise RecipeError("the model config has no num_hidden_layers / num_attention_heads: not a decoder config?")
    kv_heads = first("num_key_value_heads", "num_kv_heads") or heads
    head_dim = first("head_dim")
    if head_dim is None:
        hidden = first("hidden_size", "n_embd", "d_model")
        if hidden is None:
            raise RecipeError("the model config has neither head_dim nor hidden_size")
        head_dim = int(hidden) // int(heads)
    window = config.get("sliding_window")
    if config.get("use_sliding_window") is False:
        window = None
    layer_types = config.get("layer_types")
    if window and isinstance(layer_types, list) and layer_types:
        sliding_layers = sum(1 for kind in layer_types if kind == "sliding_attention")
    else:
        sliding_layers = int(layers) if window else 0
    return AttentionShape(
        num_layers=int(layers),
        num_heads=int(heads),
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        sliding_window=int(window) if window and sliding_layers else None,
        sliding_layers=sliding_layers,
        max_position_embeddings=first("max_position_embeddings", "n_positions"),
        dtype=str(first("dtype", "torch_dtype") or "float32").removeprefix("torch."),
    )


def kv_bytes_per_token(shape: AttentionShape, *, dtype: str | None = None, num_kv_heads: int | None = None) -> float:
    """Cache bytes one token adds on every layer (keys + values), ignoring sliding windows."""
    heads = num_kv_heads if num_kv_heads is not None else shape.num_kv_heads
    return 2 * shape.num_layers * heads * shape.head_dim * dtype_bytes(dtype or shape.dtype)


def kv_cache_bytes(
    shape: AttentionShape,
    *,
    context_len: int,
    batch_size: int = 1,
    dtype: str | None = None,
    num_kv_heads: int | None = None,
) -> float:
    """KV-cache bytes for ``batch_size`` sequences of ``context_len`` tokens each.

    Windowed layers keep at most ``sliding_window`` tokens. ``dtype`` overrides the
    config's (e.g. ``int8`` for a quantized cache; scales are not counted);
    ``num_kv_heads`` overrides the head count (what-if MHA/MQA).
    """
    if context_len < 0 or batch_size < 1:
        raise ValueError("context_len must be ≥ 0 and batch_size ≥ 1")
    heads = num_kv_heads if num_kv_heads is not None else shape.num_kv_heads
    per_layer_token = 2 * heads * shape.head_dim * dtype_bytes(dtype or shape.dtype)
    full_layers = shape.num_layers - shape.sliding_layers
    windowed = min(context_len, shape.sliding_window) if shape.sliding_window else context_len
    tokens = full_layers * context_len + shape.sliding_layers * windowed
    return per_layer_token * tokens * batch_size


class KVCacheRow(BaseModel):
    """One attention variant at one context length (what the calculator table shows)."""

    kind: AttentionKind
    num_kv_heads: int
    context_len: int
    batch_size: int
    dtype: str
    bytes_per_token: float
    cache_bytes: float
    #: Cache size relative to MHA with the same layers, heads and dtype.
    ratio_to_mha: float
    #: True for the model's own configuration (the others are what-ifs).
    actual: bool


def attention_comparison(
    shape: AttentionShape,
    *,
    context_lens: list[int],
    batch_size: int = 1,
    dtype: str | None = None,
) -> list[KVCacheRow]:
    """MHA vs the model's GQA vs MQA cache size at each context length (the model's own row marked)."""
    dtype = dtype or shape.dtype
    variants: list[tuple[AttentionKind, int]] = [("MHA", shape.num_heads)]
    if 1 < shape.num_kv_heads < shape.num_heads:
        variants.append(("GQA", shape.num_kv_heads))
    if shape.num_heads > 1:
        variants.append(("MQA", 1))
    rows = []
    for context in context_lens:
        mha = kv_cache_bytes(
            shape, context_len=context, batch_size=batch_size, dtype=dtype, num_kv_heads=shape.num_heads
        )
        for kind, heads in variants:
            size = kv_cache_bytes(shape, context_len=context, batch_size=batch_size, dtype=dtype, num_kv_heads=heads)
            rows.append(
                KVCacheRow(
                    kind=kind,
                    num_kv_heads=heads,
                    context_len=context,
                    batch_size=batch_size,
                    dtype=dtype,
                    bytes_per_token=kv_bytes_per_token(shape, dtype=dtype, num_kv_heads=heads),
                    cache_bytes=size,
                    ratio_to_mha=size / mha if mha else 1.0,
                    actual=heads == shape.num_kv_heads,
                )
            )
    return rows


def llama_parameter_count(config: Mapping[str, Any]) -> int:
    """Parameters of a Llama-style decoder (gated MLP, RMSNorm, no biases) from its config.

    Embeddings + (untied) LM head + per layer (q, k, v, o projections, gate/up/down,
    two norms) + the final norm. An estimate for other architectures; use the real
    weight bytes when the checkpoint is at hand.
    """
    shape = attention_shape(config)
    hidden = int(config["hidden_size"])
    intermediate = int(config["intermediate_size"])
    vocab = int(config["vocab_size"])
    attention = hidden * shape.num_heads * shape.head_dim * 2 + hidden * shape.num_kv_heads * shape.head_dim * 2
    per_layer = attention + 3 * hidden * intermediate + 2 * hidden
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return embeddings + shape.num_layers * per_layer + hidden


class DecodeRoofline(BaseModel):
    """Upper bound on decode speed when every step must stream the weights and the KV cache."""

    bandwidth_bytes_per_s: float
    weight_bytes: float
    kv_bytes_per_sequence: float
    batch_size: int
    context_len: int
    #: Bytes one decode step reads: weights once + every sequence's cache.
    bytes_per_step: float
    #: Tokens per second per sequence (= steps per second).
    tokens_per_s_per_sequence: float
    #: Tokens per second over the whole batch.
    tokens_per_s: float


def decode_roofline(
    *,
    weight_bytes: float,
    kv_bytes_per_sequence: float,
    bandwidth_bytes_per_s: float,
    batch_size: int = 1,
    context_len: int = 0,
) -> DecodeRoofline:
    """tokens/s ≤ batch × bandwidth ÷ (weight_bytes + batch × kv_bytes_per_sequence).

    Ignores compute, activations and cache hits; a measured decode speed above the
    bound means the bandwidth figure is too low (e.g. weights fit in the CPU's caches).
    """
    if bandwidth_bytes_per_s <= 0 or batch_size < 1 or weight_bytes < 0 or kv_bytes_per_sequence < 0:
        raise ValueError("bandwidth must be > 0, batch_size ≥ 1 and byte counts ≥ 0")
    per_step = weight_bytes + batch_size * kv_bytes_per_sequence
    steps = bandwidth_bytes_per_s / per_step if per_step else float("inf")
    return DecodeRoofline(
        bandwidth_bytes_per_s=bandwidth_bytes_per_s,
        weight_bytes=weight_bytes,
        kv_bytes_per_sequence=kv_bytes_per_sequence,
        batch_size=batch_size,
        context_len=context_len,
        bytes_per_step=per_step,
        tokens_per_s_per_sequence=steps,
        tokens_per_s=steps * batch_size,
    )


class BandwidthProbe(BaseModel):
    """A measured copy bandwidth (best of ``repeats``; STREAM copy: read + written bytes per second)."""

    device: str
    buffer_bytes: int
    repeats: int
    bytes_per_s: float
    median_bytes_per_s: float
    method: str


def measure_copy_bandwidth(
    *, buffer_bytes: int = 256 * 1024 * 1024, repeats: int = 5, device: str = "cpu"
) -> BandwidthProbe:
    """Copy a ``buffer_bytes`` buffer ``repeats`` times; report the best and median rate.

    ``device="cpu"`` uses numpy (``np.copyto``, one thread); ``"cuda"`` uses a torch
    device-to-device copy with synchronisation (``RuntimeError`` without CUDA). The
    buffer should be well above the last-level cache (the default 256 MiB is), else
    the figure is cache bandwidth, not memory bandwidth. Allocates 2 × ``buffer_bytes``.
    """
    if buffer_bytes < 1024 or repeats < 1:
        raise ValueError("buffer_bytes must be ≥ 1024 and repeats ≥ 1")
    rates: list[float] = []
    if device == "cpu":
        import numpy as np

        source = np.ones(buffer_bytes // 8, dtype=np.float64)
        target = np.empty_like(source)
        np.copyto(target, source)  # first touch: page faults are not bandwidth
        for _ in range(repeats):
            began = time.perf_counter()
            np.copyto(target, source)
            rates.append(2 * source.nbytes / max(time.perf_counter() - began, 1e-9))
        method, size = "numpy copyto (1 thread)", source.nbytes
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available for the bandwidth probe")
        source = torch.ones(buffer_bytes // 4, dtype=torch.float32, device="cuda")
        target = torch.empty_like(source)
        target.copy_(source)
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            target.copy_(source)
            end.record()
            torch.cuda.synchronize()
            seconds = start.elapsed_time(end) / 1000.0
            rates.append(2 * source.numel() * 4 / max(seconds, 1e-9))
        method, size = f"torch device copy ({torch.cuda.get_device_name()})", source.numel() * 4
    else:
        raise ValueError(f"unknown device '{device}' (cpu or cuda)")
    ordered = sorted(rates)
    return BandwidthProbe(
        device=device,
        buffer_bytes=int(size),
        repeats=repeats,
        bytes_per_s=ordered[-1],
        median_bytes_per_s=ordered[len(ordered) // 2],
        method=method,
    )
