"""Evaluation: datasets, metrics and one evaluator per task.

An evaluator is built once per run (``evaluator_for(task, ...)``) and called
with each variant in order, baseline first: ``evaluate(artifact) -> metrics``.
An evaluator may also expose ``last_generations`` (prompt → text of the variant
just evaluated; causal LMs), which the pipeline copies into the report.
Adding a task means adding an evaluator class to ``_EVALUATORS``.
"""

from __future__ import annotations

from typing import Any, Protocol

from optimizers.errors import RecipeError


class Evaluator(Protocol):
    task: str

    def describe(self) -> str: ...

    def evaluate(self, artifact: Any) -> dict[str, float]: ...


def _feature_extraction(dataset: str | None, max_samples: int, batch_size: int) -> Evaluator:
    from optimizers.evaluation.feature_extraction import FeatureExtractionEvaluator

    return FeatureExtractionEvaluator(dataset, max_samples, batch_size)


def _causal_lm(dataset: str | None, max_samples: int, batch_size: int) -> Evaluator:
    from optimizers.evaluation.causal_lm import CausalLMEvaluator

    return CausalLMEvaluator(dataset, max_samples, batch_size)


def _image_classification(dataset: str | None, max_samples: int, batch_size: int) -> Evaluator:
    from optimizers.evaluation.image_classification import ImageClassificationEvaluator

    return ImageClassificationEvaluator(dataset, max_samples, batch_size)


_EVALUATORS = {
    "feature-extraction": _feature_extraction,
    "causal-lm": _causal_lm,
    "image-classification": _image_classification,
}


def supported_tasks() -> tuple[str, ...]:
    return tuple(sorted(_EVALUATORS))


def evaluator_for(task: str, *, dataset: str | None, max_samples: int, batch_size: int) -> Evaluator:
    """The evaluator for ``task``; ``RecipeError`` naming the supported tasks otherwise."""
    try:
        factory = _EVALUATORS[task]
    except KeyError:
        raise RecipeError(f"task {task} cannot be evaluated yet; supported: {', '.join(supported_tasks())}") from None
    return factory(dataset, max_samples, batch_size)
