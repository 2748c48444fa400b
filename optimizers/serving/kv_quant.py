"""KV-cache quantization for a causal LM: transformers' quantized cache vs the default cache, measured.

``kv_cache_quantization(artifact, options)`` → ``KVQuantReport``. The quantized
cache is transformers' ``QuantizedCache`` (what ``generate(...,
cache_implementation="quantized", cache_config={...})`` builds; ``cache_config``
gives that dict), KIVI-style: keys and values are quantized per group of
``q_group_size`` with the HQQ or optimum-quanto backend, while the newest
``residual_length`` tokens stay in full precision until they are folded in.

Each cache variant (the default ``DynamicCache``, then each bit width) runs in
its own fresh interpreter (``main``) so that timings and peak memory do not
leak between variants. For every context length L and every held-out window
(tokens of the tiny-LM evaluation split) the child prefills L − D tokens, then
decodes D tokens one at a time teacher-forced on the real text, and records:

- cache bytes: the bytes of every tensor the cache object holds after the L
  tokens (packed codes, scales, zero points, the full-precision residual),
  each storage counted once;
- peak memory: the growth of the process's resident set while running that
  context, above its resident set before (Linux ``clear_refs`` resets the
  high-water mark per context); includes prefill activations and the
  full-precision copies the quantized cache dequantizes at each step;
- decode tokens/s over the D teacher-forced steps;
- the negative log-likelihood of each real next token and the predicted
  (argmax) token at each decode step, from which the parent computes
  perplexity and top-1 agreement with the default cache's predictions.

Only decode-step predictions count: the prefill's logits never read the
quantized cache (it stores the prefill's keys quantized, but the prefill
itself attends to the full-precision ones).
"""

from __future__ import annotations

import importlib.util
import json
import math
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from optimizers.artifacts import ModelArtifact
from optimizers.errors import InferOptError, PreflightError

#: Bit widths transformers' quantized cache layers accept, per backend (cache_utils.Quanto/HQQQuantizedLayer).
SUPPORTED_BITS = {"hqq": (1, 2, 3, 4, 8), "quanto": (2, 4)}
#: The Python package each backend needs, and how to get it.
BACKEND_PACKAGES = {"hqq": ("hqq", "pip install hqq"), "quanto": ("optimum.quanto", "pip install optimum-quanto")}


class KVQuantOptions(BaseModel):
    """``kv_quant:`` in a serving spec."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    backend: Literal["hqq", "quanto"] = "hqq"
    nbits: list[int] = Field(default_factory=lambda: [4, 8], min_length=1, max_length=5)
    context_lens: list[int] = Field(default_factory=lambda: [128, 512], min_length=1, max_length=8)
    #: Teacher-forced decode steps per window (the cache holds L − D prefilled + D decoded tokens).
    decode_tokens: int = Field(32, ge=1, le=1024)
    #: Held-out windows per context length.
    windows: int = Field(3, ge=1, le=64)
    q_group_size: int = Field(64, ge=8, le=4096)
    residual_length: int = Field(128, ge=1, le=65536)

    @model_validator(mode="after")
    def _check(self) -> KVQuantOptions:
        allowed = SUPPORTED_BITS[self.backend]
        wrong = [bits for bits in self.nbits if bits not in allowed]
        if wrong:
            raise ValueError(
                f"nbits {wrong} not supported by the {self.backend} backend of transformers' quantized cache "
                f"(it takes {', '.join(map(str, allowed))})"
            )
        if len(set(self.nbits)) != len(self.nbits):
            raise ValueError("nbits has duplicates")
        short = [length for length in self.context_lens if length <= self.decode_tokens]
        if short:
            raise ValueError(f"context_lens {short} must exceed decode_tokens ({self.decode_tokens})")
        return self


def cache_config(backend: str, nbits: int, options: KVQuantOptions) -> dict[str, Any]:
    """``cache_config`` for ``generate(..., cache_implementation="quantized")``; also ``QuantizedCache``'s kwargs."""
    return {
        "backend": backend,
        "nbits": nbits,
        "q_group_size": options.q_group_size,
        "residual_length": options.residual_length,
    }


def backend_problem(backend: str) -> str | None:
    """Why ``backend`` cannot run here (its package is missing), or None."""
    module, install = BACKEND_PACKAGES[backend]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else f"the {backend} backend needs the {module.split('.')[0]} package ({install})"


class KVQuantPoint(BaseModel):
    """One cache variant at one context length (summed over the windows)."""

    context_len: int
    cache_bytes: int
    peak_memory_bytes: int
    decode_tokens_per_s: float
    #: Perplexity of the real next tokens at the decode steps.
    perplexity: float
    #: Share of decode steps whose argmax equals the default cache's (1 for the default itself).
    top1_agreement: float = Field(ge=0.0, le=1.0)
    #: cache bytes ÷ the default cache's at this context length.
    memory_ratio: float


class KVQuantVariant(BaseModel):
    label: str
    backend: str | None = None
    nbits: int | None = None
    points: list[KVQuantPoint] = Field(default_factory=list)
    #: Why this variant produced nothing (missing backend, failed child).
    error: str | None = None


class KVQuantReport(BaseModel):
    """``serving.json``'s ``kv_quant`` part."""

    backend: str
    q_group_size: int
    residual_length: int
    decode_tokens: int
    windows: int
    context_lens: list[int]
    dtype: str
    peak_method: str
    variants: list[KVQuantVariant] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- measuring (child side)


def tensor_bytes(value: Any, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes of every tensor reachable from ``value`` (tensors, tensor subclasses, dicts, lists, tuples).

    Tensor subclasses (optimum-quanto's packed tensors) are opened through
    ``__tensor_flatten__``; each (data pointer, size) is counted once.
    """
    import torch

    seen = set() if seen is None else seen
    if isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor and hasattr(value, "__tensor_flatten__"):
            names, _ = value.__tensor_flatten__()
            return sum(tensor_bytes(getattr(value, name), seen) for name in names)
        size = value.numel() * value.element_size()
        key = (value.data_ptr(), size)
        if size == 0 or key in seen:
            return 0
        seen.add(key)
        return size
    if isinstance(value, dict):
        return sum(tensor_bytes(item, seen) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(item, seen) for item in value)
    return 0


def cache_bytes(cache: Any) -> int:
    """Bytes held by a transformers ``Cache``'s layers (every tensor attribute, quantized or not)."""
    seen: set[tuple[int, int]] = set()
    return sum(tensor_bytes(vars(layer), seen) for layer in cache.layers)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> str:
    """Reset the resident-set high-water mark (Linux ≥ 4.0); the method the peak figures then mean."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def _peak_bytes(method: str) -> int:
    if method == "VmHWM":
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _new_cache(model: Any, backend: str | None, nbits: int | None, options: KVQuantOptions) -> Any:
    from transformers import DynamicCache, QuantizedCache

    config = model.config.get_text_config(decoder=True)
    if backend is None:
        return DynamicCache(config=config)
    return QuantizedCache(config=config, **cache_config(backend, nbits, options))


def _run_window(model: Any, cache: Any, ids: list[int], decode_tokens: int) -> tuple[list[float], list[int], float]:
    """Prefill ``ids[:L-D]``, decode D tokens teacher-forced; (NLL per step, argmax per step, decode seconds)."""
    import torch

    length = len(ids) - 1
    prefill = length - decode_tokens
    tokens = torch.tensor([ids])
    nll: list[float] = []
    argmax: list[int] = []
    with torch.inference_mode():
        model(input_ids=tokens[:, :prefill], past_key_values=cache, use_cache=True)
        seconds = 0.0
        for step in range(decode_tokens):
            position = prefill + step
            start = time.perf_counter()
            logits = model(
                input_ids=tokens[:, position : position + 1],
                past_key_values=cache,
                use_cache=True,
                position_ids=torch.tensor([[position]]),
            ).logits[0, -1]
            seconds += time.perf_counter() - start
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            nll.append(-float(log_probs[ids[position + 1]]))
            argmax.append(int(logits.argmax()))
    return nll, argmax, seconds


def measure_variant(
    folder: Path, backend: str | None, nbits: int | None, options: KVQuantOptions, windows: list[list[int]]
) -> dict[str, Any]:
    """One cache variant over every context length: JSON-ready raw measurements (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, trust_remote_code=False).eval()
    shortest = min(options.context_lens)
    _run_window(model, _new_cache(model, backend, nbits, options), windows[0][: shortest + 1], options.decode_tokens)
    contexts = []
    method = "ru_maxrss"
    for length in sorted(options.context_lens):
        method = _reset_peak()
        before = _rss_bytes()
        nll: list[float] = []
        argmax: list[int] = []
        seconds = 0.0
        held = 0
        for index, window in enumerate(windows):
            cache = _new_cache(model, backend, nbits, options)
            window_nll, window_argmax, window_seconds = _run_window(
                model, cache, window[: length + 1], options.decode_tokens
            )
            nll += window_nll
            argmax += window_argmax
            seconds += window_seconds
            if index == 0:
                held = cache_bytes(cache)
            del cache
        contexts.append(
            {
                "context_len": length,
                "cache_bytes": held,
                "peak_memory_bytes": max(0, _peak_bytes(method) - before),
                "decode_seconds": seconds,
                "decode_steps": len(nll),
                "nll": nll,
                "argmax": argmax,
            }
        )
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return {"contexts": contexts, "peak_method": method, "dtype": dtype, "threads": torch.get_num_threads()}


def heldout_windows(folder: Path, options: KVQuantOptions) -> list[list[int]]:
    """``options.windows`` token windows of max(context_lens) + 1 tokens from the tiny-LM evaluation split."""
    from transformers import AutoTokenizer

    from optimizers.passes.llm_common import builtin_texts, calibration_windows

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    return calibration_windows(
        tokenizer, "eval", builtin_texts("eval"), samples=options.windows, seq_len=max(options.context_lens) + 1
    ).input_ids


# --------------------------------------------------------------------------- the analysis (parent side)


def _label(backend: str | None, nbits: int | None, dtype: str) -> str:
    return f"default cache ({dtype})" if backend is None else f"{backend} int{nbits}"


def kv_cache_quantization(
    artifact: ModelArtifact,
    options: KVQuantOptions,
    *,
    on_log: Callable[[str], None] | None = None,
    timeout_s: float = 1800.0,
) -> KVQuantReport:
    """Measure the default cache and each ``options.nbits`` quantized cache, each in its own process.

    ``PreflightError`` for a non-``hf`` artifact, context lengths beyond the
    model's positions, or when the default cache itself cannot be measured. A
    quantized variant that cannot run (backend missing, child failed) keeps
    its ``error`` and the rest is still reported.
    """
    from optimizers.benchmark.isolated import run_in_child

    log = on_log or (lambda message: None)
    if artifact.format != "hf" or artifact.task != "causal-lm":
        raise PreflightError(
            f"KV-cache quantization needs a Hugging Face causal LM, not {artifact.format}/{artifact.task}"
        )
    folder = Path(artifact.path)
    config = json.loads((folder / "config.json").read_text())
    positions = config.get("max_position_embeddings")
    if positions and max(options.context_lens) > positions:
        raise PreflightError(
            f"kv_quant: context length {max(options.context_lens)} exceeds the model's {positions} positions"
        )
    windows = heldout_windows(folder, options)
    if len(windows) < options.windows:
        raise PreflightError(f"kv_quant: only {len(windows)} held-out windows of {max(options.context_lens)} tokens")
    request = {"folder": str(folder), "options": options.model_dump(), "windows": windows}
    variants: list[tuple[str | None, int | None]] = [(None, None)] + [(options.backend, bits) for bits in options.nbits]
    raw: dict[tuple[str | None, int | None], dict[str, Any]] = {}
    errors: dict[tuple[str | None, int | None], str] = {}
    problem = backend_problem(options.backend)
    for backend, nbits in variants:
        if backend is not None and problem:
            errors[(backend, nbits)] = problem
            continue
        log(f"kv_quant: measuring {_label(backend, nbits, 'full precision')} in its own process")
        try:
            raw[(backend, nbits)] = run_in_child(
                "optimizers.serving.kv_quant",
                {**request, "backend": backend, "nbits": nbits},
                what=f"KV-cache measurement ({_label(backend, nbits, 'full precision')})",
                timeout_s=timeout_s,
            )
        except InferOptError as error:
            if backend is None:
                raise PreflightError(f"kv_quant: the default cache could not be measured: {error}") from None
            errors[(backend, nbits)] = str(error)
    default = raw[(None, None)]
    report = KVQuantReport(
        backend=options.backend,
        q_group_size=options.q_group_size,
        residual_length=options.residual_length,
        decode_tokens=options.decode_tokens,
        windows=len(windows),
        context_lens=sorted(options.context_lens),
        dtype=default["dtype"],
        peak_method=default["peak_method"],
    )
    reference = {context["context_len"]: context for context in default["contexts"]}
    for backend, nbits in variants:
        variant = KVQuantVariant(label=_label(backend, nbits, default["dtype"]), backend=backend, nbits=nbits)
        variant.error = errors.get((backend, nbits))
        for context in raw.get((backend, nbits), {}).get("contexts", []):
            base = reference[context["context_len"]]
            agree = sum(a == b for a, b in zip(context["argmax"], base["argmax"], strict=True))
            variant.points.append(
                KVQuantPoint(
                    context_len=context["context_len"],
                    cache_bytes=context["cache_bytes"],
                    peak_memory_bytes=context["peak_memory_bytes"],
                    decode_tokens_per_s=context["decode_steps"] / context["decode_seconds"]
                    if context["decode_seconds"] > 0
                    else 0.0,
                    perplexity=math.exp(sum(context["nll"]) / len(context["nll"])),
                    top1_agreement=agree / len(context["argmax"]),
                    memory_ratio=context["cache_bytes"] / base["cache_bytes"] if base["cache_bytes"] else 0.0,
                )
            )
        report.variants.append(variant)
    report.notes.append(
        f"The newest {options.residual_length} tokens stay in full precision (residual); the cache at L tokens holds "
        f"L − {options.decode_tokens} quantized prefill tokens and {options.decode_tokens} decoded ones."
    )
    report.notes.append(
        "Each decode step dequantizes the whole cached history back to full precision, so the quantized cache saves "
        "memory at rest, not compute: on the CPU it decodes slower than the default cache."
    )
    if report.peak_method != "VmHWM":
        report.notes.append("Peak memory is the process's lifetime high-water mark (the per-context reset failed).")
    return report


def main(argv: list[str]) -> int:
    """Child entry point: ``IN.json`` = {"folder", "options", "windows", "backend", "nbits"}."""
    request = json.loads(Path(argv[0]).read_text())
    result = measure_variant(
        Path(request["folder"]),
        request["backend"],
        request["nbits"],
        KVQuantOptions.model_validate(request["options"]),
        request["windows"],
    )
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
