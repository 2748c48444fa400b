"""Runtime variants of the PyTorch baseline: half precision, attention kernels and ``torch.compile``.

A recipe's ``benchmark.variants`` (e.g. ``[fp16, bf16, sdpa, eager_attention, flash_attention,
torch_compile, fp16+torch_compile]``) re-times the *baseline* (a Hugging Face folder) under
different runtime settings, so "operator fusion" and "half precision on the GPU" show up as
measured rows next to the pass variants. They change how the model runs, not the model: no
artifact, no gate, no evaluation — just latency rows, each naming its device.

A variant name is ``+``-joined tokens, at most one of each kind:

- precision: ``fp32``, ``fp16``, ``bf16`` (half precision needs CUDA);
- attention: ``eager_attention``, ``sdpa``, ``flash_attention`` (flash-attn 2: CUDA, compute
  capability ≥ 8.0, the ``flash_attn`` package; without a precision it runs in fp16, the only
  kind of numbers its kernels take);
- ``torch_compile`` (Inductor: Triton on CUDA, a C++ compiler on a CPU).

Variants run on the worker's GPU when it has one, else on its CPU. Every GPU row's speedup
is against an FP32 row on the same GPU (added automatically), every CPU row's against the
baseline's own CPU row. A variant that cannot run here is a ``skipped`` row with the reason.

This module's parsing and skip rules are pure (the recipe and the web routing use them);
``measure_runtime_variants`` runs each variant in its own process (``benchmark.isolated``).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optimizers.errors import InferOptError, RecipeError

if TYPE_CHECKING:
    from optimizers.artifacts import ModelArtifact
    from optimizers.recipe import BenchmarkSettings
    from optimizers.report import RuntimeVariantReport

PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: Recipe token → transformers ``attn_implementation``.
ATTENTIONS = {"eager_attention": "eager", "sdpa": "sdpa", "flash_attention": "flash_attention_2"}
COMPILE = "torch_compile"
TOKENS = (*PRECISIONS, *ATTENTIONS, COMPILE)

#: Tasks whose baseline the variants can re-time (the encoder benchmark's model call).
SUPPORTED_TASKS = ("feature-extraction",)
#: flash-attn 2's kernels need Ampere or newer.
FLASH_MIN_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class RuntimeVariant:
    """One parsed variant. ``attention`` None keeps the model's default implementation."""

    name: str
    precision: str = "fp32"
    attention: str | None = None
    compile: bool = False

    @property
    def needs_cuda(self) -> bool:
        return self.precision != "fp32" or self.attention == "flash_attention"

    @property
    def prefers_gpu(self) -> bool:
        """Routing hint: half precision and flash attention only run on a GPU worker."""
        return self.needs_cuda

    @property
    def attn_implementation(self) -> str | None:
        return ATTENTIONS[self.attention] if self.attention else None

    def describe(self) -> str:
        """``FP16, SDPA attention, torch.compile`` (for pages and logs)."""
        parts = [self.precision.upper()]
        labels = {
            "eager_attention": "eager attention",
            "sdpa": "SDPA attention",
            "flash_attention": "flash attention 2",
        }
        parts.append(labels[self.attention] if self.attention else "default attention")
        if self.compile:
            parts.append("torch.compile")
        return ", ".join(parts)


def parse_variant(text: str) -> RuntimeVariant:
    """``"fp16+sdpa"`` → ``RuntimeVariant``; ``RecipeError`` for an unknown or repeated kind of token."""
    if not isinstance(text, str) or not text.strip():
        raise RecipeError(f"a benchmark variant must be a non-empty string, got {text!r}")
    tokens = [token.strip().lower() for token in text.split("+")]
    precision = attention = None
    compiled = False
    for token in tokens:
        if token in PRECISIONS:
            if precision is not None:
                raise RecipeError(f"benchmark variant {text!r}: two precisions ({precision}, {token})")
            precision = token
        elif token in ATTENTIONS:
            if attention is not None:
                raise RecipeError(f"benchmark variant {text!r}: two attention implementations ({attention}, {token})")
            attention = token
        elif token == COMPILE:
            if compiled:
                raise RecipeError(f"benchmark variant {text!r}: {COMPILE} given twice")
            compiled = True
        else:
            raise RecipeError(f"unknown benchmark variant token {token!r} in {text!r}; known: {', '.join(TOKENS)}")
    if attention == "flash_attention" and precision is None:
        precision = "fp16"  # flash-attn's kernels take fp16/bf16 only
    if attention == "flash_attention" and precision == "fp32":
        raise RecipeError(f"benchmark variant {text!r}: flash attention runs in fp16 or bf16 only")
    precision = precision or "fp32"
    # Canonical name: fp32 is implied unless it is the whole variant ("sdpa" == "fp32+sdpa").
    parts = [precision] if precision != "fp32" or not (attention or compiled) else []
    parts += [attention] if attention else []
    parts += [COMPILE] if compiled else []
    canonical = "+".join(parts)
    return RuntimeVariant(name=canonical, precision=precision, attention=attention, compile=compiled)


def parse_variants(names: list[str]) -> list[RuntimeVariant]:
    """Parse each name; ``RecipeError`` for a bad one or two names meaning the same variant."""
    parsed = [parse_variant(name) for name in names]
    seen: dict[str, str] = {}
    for name, variant in zip(names, parsed, strict=True):
        if variant.name in seen:
            raise RecipeError(f"benchmark variants {seen[variant.name]!r} and {name!r} are the same variant")
        seen[variant.name] = name
    return parsed


def wants_gpu(names: list[str]) -> bool:
    """Whether any of the (valid) variant ``names`` runs only on a GPU (routing prefers the ``gpu`` queue)."""
    return any(parse_variant(name).prefers_gpu for name in names)


@dataclass(frozen=True)
class Machine:
    """What decides whether a variant can run here (gathered without initialising CUDA)."""

    gpus: tuple[dict[str, Any], ...] = ()
    flash_attn: bool = False
    triton: bool = False
    cxx_compiler: bool = False

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"

    @classmethod
    def here(cls) -> Machine:
        """This machine: GPUs probed in a child process, so the caller never initialises CUDA."""
        from optimizers.capabilities import gpu_info_isolated

        return cls(
            gpus=tuple(gpu_info_isolated()),
            flash_attn=importlib.util.find_spec("flash_attn") is not None,
            triton=importlib.util.find_spec("triton") is not None,
            cxx_compiler=any(shutil.which(name) for name in ("g++", "c++", "clang++")),
        )


def skip_reason(
    variant: RuntimeVariant, machine: Machine, *, task: str, artifact_format: str, quantized: bool = False
) -> str | None:
    """Why ``variant`` of a ``task``/``artifact_format`` baseline cannot be timed on ``machine``; None if it can."""
    if artifact_format != "hf" or quantized:
        return "runtime variants re-time a Hugging Face FP32 baseline; this baseline is not one"
    if task not in SUPPORTED_TASKS:
        return f"runtime variants are measured for {', '.join(SUPPORTED_TASKS)} models only, not {task}"
    if variant.needs_cuda and not machine.gpus:
        what = "flash attention" if variant.attention == "flash_attention" else f"{variant.precision.upper()}"
        return f"{what} is timed on a CUDA GPU only; this worker has none"
    if variant.attention == "flash_attention":
        if not machine.flash_attn:
            return "flash-attn is not installed on this worker (pip install flash-attn)"
        best = max(tuple(gpu["compute_capability"]) for gpu in machine.gpus)
        if best < FLASH_MIN_CAPABILITY:
            return f"flash attention 2 needs compute capability ≥ 8.0; this GPU has {best[0]}.{best[1]}"
    if variant.compile and machine.device == "cuda" and not machine.triton:
        return "torch.compile on a GPU needs Triton, which is not installed on this worker"
    if variant.compile and machine.device == "cpu" and not machine.cxx_compiler:
        return "torch.compile on a CPU needs a C++ compiler (g++ or clang++), and this worker has none"
    return None


def plan(
    names: list[str], machine: Machine, *, task: str, artifact_format: str, quantized: bool = False
) -> list[tuple[RuntimeVariant, str | None]]:
    """The rows to produce, in order: (variant, skip reason or None).

    On a GPU an ``fp32`` reference row comes first (unless asked for already), so every GPU
    row's speedup is measured against the same device.
    """
    variants = parse_variants(names)
    if machine.device == "cuda" and "fp32" not in {variant.name for variant in variants}:
        variants.insert(0, RuntimeVariant(name="fp32"))
    return [
        (variant, skip_reason(variant, machine, task=task, artifact_format=artifact_format, quantized=quantized))
        for variant in variants
    ]


def speedup_reference(variant: RuntimeVariant, device: str) -> str:
    """The row a measured variant's speedup is against: ``fp32`` on a GPU, else the ``baseline`` variant."""
    return "fp32" if device == "cuda" and variant.name != "fp32" else "baseline"


def measure_runtime_variants(
    artifact: ModelArtifact,
    settings: BenchmarkSettings,
    *,
    machine: Machine | None = None,
    log=None,
    timeout_s: float = 3600.0,
) -> list[RuntimeVariantReport]:
    """Time each of ``settings.variants`` of ``artifact`` (the baseline), each in its own process.

    Returns one ``RuntimeVariantReport`` per planned row; a variant whose child fails is a
    ``failed`` row with the error, never an exception (the pass variants' results stand).
    """
    from optimizers.benchmark.isolated import run_in_child
    from optimizers.passes.torch_quantize_dynamic import QUANTIZED_MARKER
    from optimizers.report import BenchmarkInfo, LatencyStats, RuntimeVariantReport

    machine = machine or Machine.here()
    log = log or (lambda message: None)
    quantized = artifact.metadata.get("weights") == QUANTIZED_MARKER
    rows: list[RuntimeVariantReport] = []
    for variant, reason in plan(
        list(settings.variants), machine, task=artifact.task, artifact_format=artifact.format, quantized=quantized
    ):
        common = {"name": variant.name, "description": variant.describe(), "of_variant": artifact.name}
        if reason:
            log(f"benchmark variant {variant.name}: skipped ({reason})")
            rows.append(RuntimeVariantReport(**common, status="skipped", reason=reason))
            continue
        request = {
            "kind": "runtime_variant",
            "artifact": artifact.model_dump(),
            "settings": settings.model_dump(),
            "variant": variant.name,
            "device": machine.device,
        }
        started = time.perf_counter()
        try:
            data = run_in_child(
                "optimizers.benchmark.isolated", request, what=f"benchmark variant {variant.name}", timeout_s=timeout_s
            )
        except (InferOptError, OSError, subprocess.TimeoutExpired) as error:
            # One failed row (e.g. a compiler error in torch.compile), not a failed job: the rest stands.
            log(f"benchmark variant {variant.name}: failed ({error})")
            rows.append(RuntimeVariantReport(**common, status="failed", reason=str(error)[-1000:]))
            continue
        info = BenchmarkInfo.model_validate(data["info"])
        rows.append(
            RuntimeVariantReport(
                **common,
                status="measured",
                device=info.device,
                reference=speedup_reference(variant, machine.device),
                benchmark={key: LatencyStats.model_validate(value) for key, value in data["stats"].items()},
                benchmark_info=info,
                first_call_s=data.get("first_call_s"),
                cosine_to_fp32=data.get("cosine_to_fp32"),
            )
        )
        log(f"benchmark variant {variant.name}: measured on {info.device} in {time.perf_counter() - started:.0f} s")
    return rows


def measure_variant_here(artifact: ModelArtifact, settings: BenchmarkSettings, name: str, device: str) -> dict:
    """The child's side: time ``name`` of ``artifact`` on ``device`` in this process (JSON-ready result).

    Also compares the variant's pooled output with FP32 eager on the CPU on the first batch
    (``cosine_to_fp32``), so a half-precision row shows what it costs in accuracy.
    """
    import numpy as np

    from optimizers.benchmark.encoder import encoder_io
    from optimizers.benchmark.harness import measure_batches
    from optimizers.runtimes import load_tokenizer
    from optimizers.runtimes.torch_eager import TorchEagerRuntime

    variant = parse_variant(name)
    runtime = TorchEagerRuntime(
        artifact,
        threads=settings.threads,
        device=device,
        dtype=PRECISIONS[variant.precision],
        attention=variant.attn_implementation,
        compile=variant.compile,
    )
    tokenizer = load_tokenizer(artifact)
    stats, info = measure_batches(
        runtime, settings, lambda batch: encoder_io(tokenizer, batch, settings.seq_len), seq_len=settings.seq_len
    )
    preprocess, postprocess = encoder_io(tokenizer, settings.batch_sizes[0], settings.seq_len)
    inputs = preprocess()
    pooled = np.asarray(postprocess(inputs, runtime.forward(inputs)), dtype=np.float64).ravel()
    reference_runtime = TorchEagerRuntime(artifact, threads=settings.threads)
    reference = np.asarray(postprocess(inputs, reference_runtime.forward(inputs)), dtype=np.float64).ravel()
    cosine = float(pooled @ reference / max(np.linalg.norm(pooled) * np.linalg.norm(reference), 1e-12))
    return {
        "stats": {key: value.model_dump() for key, value in stats.items()},
        "info": info.model_dump(),
        "first_call_s": runtime.first_call_s,
        "cosine_to_fp32": cosine,
    }
