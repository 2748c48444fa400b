"""Quality gates: rules evaluated against the baseline → ``pass`` / ``fail`` / ``needs_approval``.

Outcome logic: any rule that fails → ``fail``. Otherwise, any quality metric
that got worse than the baseline at all → ``needs_approval`` (no degradation
is accepted silently, however small). Otherwise ``pass``.

Rule kinds (``threshold`` meaning):
- ``absolute_drop``: quality lost, in metric units, ≤ threshold.
- ``relative_drop``: quality lost as a fraction of the baseline ≤ threshold.
- ``recovery_ratio``: candidate as a fraction of the baseline ≥ threshold.
- ``min_speedup``: baseline latency ÷ candidate latency ≥ threshold; metric is
  ``p50_ms`` (first batch size) or ``p50_ms@<batch>``, any latency field.
- ``max_size_ratio``: candidate size ÷ baseline size ≤ threshold (metric ``size_bytes``).
"""

from __future__ import annotations

from optimizers.recipe import GateRule
from optimizers.report import GateReport, RuleOutcome, VariantReport

HIGHER_IS_BETTER = frozenset({"cosine", "recall_at_1", "accuracy", "f1", "top1_agreement"})
LOWER_IS_BETTER = frozenset({"perplexity", "kl_divergence", "kl_divergence_p99"})
QUALITY_METRICS = HIGHER_IS_BETTER | LOWER_IS_BETTER

#: Differences smaller than this are float32 rounding between runtimes, not
#: degradation (an ONNX export of the same weights gives cosine 0.9999999).
NOISE_FLOOR = 1e-6

DEFAULT_RULES: dict[str, list[GateRule]] = {
    "feature-extraction": [
        GateRule(metric="cosine", kind="absolute_drop", threshold=0.01),
        GateRule(metric="recall_at_1", kind="absolute_drop", threshold=0.02),
    ],
    # One point of top-1 accuracy (about 3 of the 336 held-out digits); agreement and KL to the
    # baseline are shown without a threshold, and any loss in them still needs approval.
    "image-classification": [GateRule(metric="accuracy", kind="absolute_drop", threshold=0.01)],
}


#: Causal LMs: largest relative perplexity increase accepted by default, by the candidate's
#: nominal weight bits (llama.cpp's own quality table: 8-bit is near-lossless, 4-bit costs a few percent).
PERPLEXITY_INCREASE_8BIT = 0.01
PERPLEXITY_INCREASE_4BIT = 0.05


def default_rules(task: str, metadata: dict | None = None) -> list[GateRule]:
    """The rules used when a recipe sets no ``gate``.

    ``causal-lm``: perplexity relative increase ≤ 1% when the candidate's
    ``metadata["weight_bits"]`` is 8 or more (or unknown), ≤ 5% below 8 bits.
    Passes that lower precision record ``weight_bits`` in their artifact's
    metadata (``gguf_quantize``: Q8_0 → 8, Q4_K_M → 4). KL divergence and
    top-1 agreement have no threshold: they are shown, and any loss in them
    still makes the outcome ``needs_approval``.
    """
    if task == "causal-lm":
        bits = (metadata or {}).get("weight_bits")
        limit = PERPLEXITY_INCREASE_4BIT if isinstance(bits, int | float) and bits < 8 else PERPLEXITY_INCREASE_8BIT
        return [GateRule(metric="perplexity", kind="relative_drop", threshold=limit)]
    return [rule.model_copy() for rule in DEFAULT_RULES.get(task, [])]


def quality_loss(metric: str, baseline: float, candidate: float) -> float:
    """How much worse the candidate is, in metric units (negative when better)."""
    if metric in LOWER_IS_BETTER:
        return candidate - baseline
    return baseline - candidate


def evaluate_gate(rules: list[GateRule], baseline: VariantReport, candidate: VariantReport) -> GateReport:
    """Judge ``candidate`` against ``baseline`` with ``rules`` (see module docstring)."""
    outcomes = [_evaluate_rule(rule, baseline, candidate) for rule in rules]
    reasons = [f"{o.metric} {o.kind}: {o.detail}" for o in outcomes if not o.passed]
    if reasons:
        return GateReport(outcome="fail", rules=outcomes, reasons=reasons)
    degraded = [
        f"{metric} dropped from {baseline.metrics[metric]:.4f} to {candidate.metrics[metric]:.4f}"
        for metric in sorted(QUALITY_METRICS)
        if metric in baseline.metrics
        and metric in candidate.metrics
        and quality_loss(metric, baseline.metrics[metric], candidate.metrics[metric]) > NOISE_FLOOR
    ]
    if degraded:
        return GateReport(outcome="needs_approval", rules=outcomes, reasons=[*degraded, "a reviewer must approve"])
    return GateReport(outcome="pass", rules=outcomes, reasons=[])


def _evaluate_rule(rule: GateRule, baseline: VariantReport, candidate: VariantReport) -> RuleOutcome:
    if rule.kind == "min_speedup":
        return _speedup_rule(rule, baseline, candidate)
    if rule.kind == "max_size_ratio":
        ratio = candidate.size_bytes / max(baseline.size_bytes, 1)
        return _outcome(
            rule, baseline.size_bytes, candidate.size_bytes, ratio <= rule.threshold, f"size ratio {ratio:.3f}"
        )
    base_value, cand_value = baseline.metrics.get(rule.metric), candidate.metrics.get(rule.metric)
    if base_value is None or cand_value is None:
        return _outcome(rule, base_value, cand_value, False, f"metric '{rule.metric}' was not measured")
    loss = quality_loss(rule.metric, base_value, cand_value)
    if rule.kind == "absolute_drop":
        return _outcome(rule, base_value, cand_value, loss <= rule.threshold, f"drop {loss:+.4f}")
    if rule.kind == "relative_drop":
        relative = loss / abs(base_value) if base_value else (0.0 if loss <= 0 else float("inf"))
        return _outcome(rule, base_value, cand_value, relative <= rule.threshold, f"relative drop {relative:+.4f}")
    # recovery_ratio
    if rule.metric in LOWER_IS_BETTER:
        ratio = base_value / cand_value if cand_value else float("inf")
    else:
        ratio = cand_value / base_value if base_value else 0.0
    return _outcome(rule, base_value, cand_value, ratio >= rule.threshold, f"recovery {ratio:.4f}")


def _speedup_rule(rule: GateRule, baseline: VariantReport, candidate: VariantReport) -> RuleOutcome:
    field, _, batch = rule.metric.partition("@")
    batch = batch or next(iter(baseline.benchmark), "")
    base_stats, cand_stats = baseline.benchmark.get(batch), candidate.benchmark.get(batch)
    if base_stats is None or cand_stats is None or not hasattr(base_stats, field):
        return _outcome(rule, None, None, False, f"no '{field}' benchmark at batch {batch or '?'}")
    base_ms, cand_ms = float(getattr(base_stats, field)), float(getattr(cand_stats, field))
    speedup = base_ms / cand_ms if cand_ms else float("inf")
    return _outcome(rule, base_ms, cand_ms, speedup >= rule.threshold, f"speedup {speedup:.2f}x at batch {batch}")


def _outcome(rule: GateRule, baseline: float | None, candidate: float | None, passed: bool, detail: str) -> RuleOutcome:
    return RuleOutcome(
        metric=rule.metric,
        kind=rule.kind,
        threshold=rule.threshold,
        baseline=baseline,
        candidate=candidate,
        passed=passed,
        detail=detail,
    )
