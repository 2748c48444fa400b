"""Rows for the results tables of a job page, computed from its report.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from optimizers.report import GenerationStats, LatencyStats, Report, RuleOutcome


@dataclass
class GateRow:
    rule: RuleOutcome

    @property
    def delta(self) -> float | None:
        if self.rule.baseline is None or self.rule.candidate is None:
            return None
        return self.rule.candidate - self.rule.baseline


@dataclass
class MetricValue:
    """One metric with its bootstrap confidence interval when the report has one."""

    name: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None


def metric_values(metrics: dict[str, float]) -> list[MetricValue]:
    """Fold ``<name>_ci_low``/``<name>_ci_high`` into the ``<name>`` entry."""
    folded = []
    for name, value in metrics.items():
        if name.endswith(("_ci_low", "_ci_high")) and name.rsplit("_ci_", 1)[0] in metrics:
            continue
        folded.append(MetricValue(name, value, metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")))
    return folded


@dataclass
class VariantRow:
    name: str
    format: str
    produced_by: str | None
    size_bytes: int
    sha256: str
    metrics: list[MetricValue]
    benchmark: list[LatencyStats] = field(default_factory=list)
    is_baseline: bool = False
    is_final: bool = False
    generation: GenerationStats | None = None
    peak_rss_mb: float | None = None
    #: (batch size, baseline p50 / this variant's p50) for each batch both were timed at.
    speedups: list[tuple[int, float]] = field(default_factory=list)
    #: This variant's own gate outcome against the original baseline (stacked recipes gate every step).
    gate_outcome: str | None = None
    #: What the pass found out (``VariantReport.details``): plain facts and sentences for the page.
    facts: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


#: ``details`` keys shown elsewhere (charts, the notes list) rather than as facts.
_NOT_FACTS = ("training_curve", "sensitivity", "notes")


def detail_facts(details: dict[str, Any]) -> list[tuple[str, str]]:
    """Readable ``(label, value)`` pairs for the scalar and small-dict entries of ``details``."""
    facts = []
    for key, value in details.items():
        if key in _NOT_FACTS or isinstance(value, list):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{name}={_short(item)}" for name, item in value.items())
        facts.append((key.replace("_", " "), _short(value)))
    return facts


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def speedups(baseline: dict[str, LatencyStats], variant: dict[str, LatencyStats]) -> list[tuple[int, float]]:
    """Baseline p50 over variant p50 per shared batch size (> 1 means faster)."""
    return [
        (int(batch), baseline[batch].p50_ms / variant[batch].p50_ms)
        for batch in sorted(variant, key=int)
        if batch in baseline and variant[batch].p50_ms > 0
    ]


@dataclass
class GenerationRow:
    """One fixed prompt and each variant's greedy continuation of it (causal LMs)."""

    prompt: str
    outputs: list[tuple[str, str]]  # (variant name, generated text), baseline first


@dataclass
class RuntimeVariantRow:
    """One runtime variant of the baseline (``report.runtime_variants``) as the benchmark table shows it."""

    name: str
    description: str
    status: str
    reason: str
    device: str
    runtime: str
    reference: str
    benchmark: list[LatencyStats] = field(default_factory=list)
    #: (batch size, reference p50 / this row's p50), the reference on the same device.
    speedups: list[tuple[int, float]] = field(default_factory=list)
    first_call_s: float | None = None
    cosine_to_fp32: float | None = None


def runtime_variant_rows(report: Report) -> list[RuntimeVariantRow]:
    """Rows for the runtime-variants table: speedups against ``reference`` (the baseline, or FP32 on the GPU)."""
    by_name = {variant.name: variant for variant in report.runtime_variants}
    baseline = report.variants[0].benchmark if report.variants else {}
    rows = []
    for variant in report.runtime_variants:
        reference = by_name.get(variant.reference)
        reference_stats = reference.benchmark if reference is not None else baseline
        rows.append(
            RuntimeVariantRow(
                name=variant.name,
                description=variant.description,
                status=variant.status,
                reason=variant.reason,
                device=variant.device,
                runtime=variant.benchmark_info.runtime if variant.benchmark_info else "",
                reference=variant.reference,
                benchmark=[variant.benchmark[key] for key in sorted(variant.benchmark, key=int)],
                speedups=speedups(reference_stats, variant.benchmark) if variant.status == "measured" else [],
                first_call_s=variant.first_call_s,
                cosine_to_fp32=variant.cosine_to_fp32,
            )
        )
    return rows


@dataclass
class Results:
    report: Report
    outcome: str | None
    reasons: list[str]
    gate_rows: list[GateRow]
    variants: list[VariantRow]
    generations: list[GenerationRow] = field(default_factory=list)
    runtime_variants: list[RuntimeVariantRow] = field(default_factory=list)

    @property
    def has_details(self) -> bool:
        return any(variant.facts or variant.notes for variant in self.variants)

    @property
    def has_generation(self) -> bool:
        return any(variant.generation is not None for variant in self.variants)


def build_results(raw: dict[str, Any] | None) -> Results | None:
    """Typed results for the template; None when there is no report or it does not match the schema."""
    # Search and serving jobs write their own report kinds (webapp/jobs/search_results.py; serving analysis).
    if not raw or raw.get("kind") in ("search", "serving"):
        return None
    try:
        report = Report.model_validate(raw)
    except ValidationError:
        return None
    gate = report.gate
    last = len(report.variants) - 1
    variants = [
        VariantRow(
            name=variant.name,
            format=variant.format,
            produced_by=variant.produced_by,
            size_bytes=variant.size_bytes,
            sha256=variant.sha256,
            metrics=metric_values(variant.metrics),
            benchmark=[variant.benchmark[key] for key in sorted(variant.benchmark, key=int)],
            is_baseline=index == 0,
            is_final=index == last and index > 0,
            generation=variant.generation,
            peak_rss_mb=variant.benchmark_info.peak_rss_mb if variant.benchmark_info else None,
            speedups=speedups(report.variants[0].benchmark, variant.benchmark) if index else [],
            gate_outcome=variant.gate.outcome if variant.gate else None,
            facts=detail_facts(variant.details),
            notes=[str(note) for note in variant.details.get("notes") or []],
        )
        for index, variant in enumerate(report.variants)
    ]
    prompts = [prompt for prompt in (report.variants[0].generations if report.variants else {})]
    generations = [
        GenerationRow(prompt, [(variant.name, variant.generations.get(prompt, "")) for variant in report.variants])
        for prompt in prompts
    ]
    return Results(
        report=report,
        outcome=gate.outcome if gate else None,
        reasons=gate.reasons if gate else [],
        gate_rows=[GateRow(rule) for rule in gate.rules] if gate else [],
        variants=variants,
        generations=generations,
        runtime_variants=runtime_variant_rows(report),
    )
