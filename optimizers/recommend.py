"""Starting-recipe recommendations: one readable table of rules, first match wins.

Given what we know before optimizing (task, format, parameter count, target
hardware and, when profiled, how much of the time is outside the model), the
table suggests a first recipe and says why. It is advice for a human, not a
decision: every suggested recipe still goes through evaluation and the gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelFacts:
    task: str
    format: str = "hf"
    parameters: int | None = None
    target: str = "cpu"  # "cpu", "gpu", "edge"
    outside_model_share: float | None = None  # pre + post share of end-to-end time, from a profile


@dataclass(frozen=True)
class Recommendation:
    title: str
    reason: str
    steps: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    when: str  # the condition in words (shown in the UI next to the reason)
    applies: Callable[[ModelFacts], bool]
    recommendation: Recommendation


def _big_preprocessing(facts: ModelFacts) -> bool:
    return facts.outside_model_share is not None and facts.outside_model_share > 0.3


_EXPORT_INT8 = [{"pass": "onnx_export"}, {"pass": "ort_quantize_dynamic", "per_channel": True}]

#: The rules, in priority order. Edit here; nowhere else decides.
RULES: tuple[Rule, ...] = (
    Rule(
        "pre/post-processing takes more than 30% of the time",
        _big_preprocessing,
        Recommendation(
            "Fix the pipeline before the model",
            "the profile shows tokenization/pooling is a large share: a faster model cannot remove it "
            "(batch requests, use a fast tokenizer, move pooling into the graph)",
        ),
    ),
    Rule(
        "causal LM, CPU target",
        lambda f: f.task == "causal-lm" and f.target in ("cpu", "edge"),
        Recommendation(
            "GGUF Q4_K_M for llama.cpp on CPU",
            "4-bit K-quants keep perplexity within a few percent and decode faster on CPUs, where "
            "token generation is memory-bound",
            [{"pass": "gguf_convert"}, {"pass": "gguf_quantize", "type": "Q4_K_M"}],
        ),
    ),
    Rule(
        "causal LM, GPU target",
        lambda f: f.task == "causal-lm" and f.target == "gpu",
        Recommendation(
            "AWQ or GPTQ INT4 (W4A16) for GPU serving",
            "weight-only 4-bit quarters the weight memory and bandwidth; vLLM/Marlin kernels run it fast",
            [{"pass": "gptq", "scheme": "W4A16"}],
        ),
    ),
    Rule(
        "encoder or classifier, GPU target",
        lambda f: f.task in ("feature-extraction", "text-classification") and f.target == "gpu",
        Recommendation(
            "TensorRT FP16 for a fixed GPU",
            "FP16 engines are the usual first step on NVIDIA GPUs; engines are tied to the GPU they were built on",
            [{"pass": "onnx_export"}, {"pass": "tensorrt_build", "precision": "fp16"}],
        ),
    ),
    Rule(
        "transformer encoder or classifier, CPU target",
        lambda f: f.task in ("feature-extraction", "text-classification") and f.target in ("cpu", "edge"),
        Recommendation(
            "INT8 first: ONNX export + dynamic INT8, per-channel",
            "measured here on MiniLM: 2.4× eager PyTorch at batch 1 for a 0.006 cosine loss; per-tensor "
            "scales lose 0.04 and fail the default gate",
            _EXPORT_INT8,
        ),
    ),
    Rule(
        "anything else",
        lambda f: True,
        Recommendation(
            "Measure first",
            "no rule matches this model yet: run a baseline-only job (profile + benchmark) and compare "
            "techniques one at a time",
        ),
    ),
)


def recommend(facts: ModelFacts) -> tuple[Rule, Recommendation]:
    """The first rule that applies to ``facts`` and its recommendation."""
    for rule in RULES:
        if rule.applies(facts):
            return rule, rule.recommendation
    raise AssertionError("the last rule always applies")  # pragma: no cover
