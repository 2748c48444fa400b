"""The report a recipe run produces (``report.json``), shared by CLI, worker and web.

Shape (stable, documented in the README)::

    {"model", "task", "variants": [{"name", "format", "path", "sha256",
      "size_bytes", "metrics": {...}, "benchmark": {"<batch>": {"p50_ms", ...}}}],
     "gate": {"outcome", "rules": [{"metric", "kind", "threshold", "baseline",
      "candidate", "passed"}]}}

Variants are in order, baseline first; the final variant is the candidate the
gate judges. Extra keys (lineage, environment, timings) are additive.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

GateOutcome = Literal["pass", "fail", "needs_approval"]


class LatencyStats(BaseModel):
    """Latency distribution of one variant at one batch size (milliseconds)."""

    batch_size: int
    seq_len: int
    iterations: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float
    throughput_per_s: float
    stable: bool
    window_spread: float
    preprocess_p50_ms: float
    postprocess_p50_ms: float


class GenerationStats(BaseModel):
    """LLM generation speed of one variant at batch 1 (medians over ``rounds``).

    Prefill: the prompt (``prompt_tokens``) in one call; decode: exactly
    ``new_tokens`` greedy tokens after it (end-of-sequence ignored, so every
    variant decodes the same length). ``ttft_ms``: from the start of prefill to
    the first generated token; ``itl_*``: inter-token latency of decode steps.
    """

    prompt_tokens: int
    new_tokens: int
    rounds: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    ttft_ms: float
    itl_p50_ms: float
    itl_p95_ms: float
    stable: bool = True
    round_spread: float = 0.0


class BenchmarkInfo(BaseModel):
    """Where and how a variant was timed."""

    runtime: str
    device: str
    threads: dict[str, Any] = Field(default_factory=dict)
    peak_rss_mb: float | None = None
    isolated_process: bool = True


class RuleOutcome(BaseModel):
    metric: str
    kind: str
    threshold: float
    baseline: float | None
    candidate: float | None
    passed: bool
    detail: str = ""


class GateReport(BaseModel):
    outcome: GateOutcome
    rules: list[RuleOutcome] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)


class VariantReport(BaseModel):
    name: str
    format: str
    path: str
    sha256: str
    size_bytes: int
    produced_by: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    parent_sha256: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    benchmark: dict[str, LatencyStats] = Field(default_factory=dict)
    benchmark_info: BenchmarkInfo | None = None
    #: Causal LMs: prefill/decode speed (``benchmark`` then holds prefill latency at batch 1).
    generation: GenerationStats | None = None
    #: Causal LMs: greedy continuation of each fixed evaluation prompt (prompt → text).
    generations: dict[str, str] = Field(default_factory=dict)
    #: What the pass that made this variant found out, copied from ``artifact.metadata["details"]``:
    #: e.g. ``training_curve`` ([{"step", "loss"}]), ``sensitivity`` ([{"unit", "metric", "drop"}]),
    #: ``sparsity``, ``notes`` (plain sentences the results page shows). Free-form but JSON-ready.
    details: dict[str, Any] = Field(default_factory=dict)
    gate: GateReport | None = None


class RuntimeVariantReport(BaseModel):
    """One runtime variant of the baseline (``benchmark.variants``): same model, other runtime settings.

    ``status``: ``measured`` (``benchmark`` holds its rows), ``skipped`` or ``failed`` (``reason``
    says why). ``reference`` names the row its speedup is against: ``baseline`` (the report's
    first variant, same CPU) or ``fp32`` (the FP32 runtime variant on the same GPU).
    """

    name: str
    description: str = ""
    of_variant: str = ""
    status: Literal["measured", "skipped", "failed"]
    reason: str = ""
    device: str = ""
    reference: str = "baseline"
    benchmark: dict[str, LatencyStats] = Field(default_factory=dict)
    benchmark_info: BenchmarkInfo | None = None
    #: Seconds of the first call (with torch.compile: mostly compilation).
    first_call_s: float | None = None
    #: Cosine of the mean-pooled output to FP32 eager on the CPU (first batch size).
    cosine_to_fp32: float | None = None


class Report(BaseModel):
    model: str
    task: str
    recipe: dict[str, Any] = Field(default_factory=dict)
    variants: list[VariantReport] = Field(default_factory=list)
    gate: GateReport | None = None
    #: Baseline profile (``optimizers.profiling.Profile`` as a dict) when the recipe asked for one.
    profile: dict[str, Any] | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    #: Runtime variants of the baseline (``benchmark.variants``), in the order asked for.
    runtime_variants: list[RuntimeVariantReport] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)

    @property
    def baseline(self) -> VariantReport:
        return self.variants[0]

    @property
    def final(self) -> VariantReport:
        return self.variants[-1]
