"""Resource estimates shown before a job is submitted (``POST /api/v1/preflight``, the form's Estimate button).

Each step's ``Pass.estimate`` reads only ``config.json`` and the safetensors headers,
so the web process loads no torch and no model. Every step is estimated on the
baseline (a chained step's real input may be smaller). The worker's own preflight
repeats the estimate with the real calibration token count and refuses a CPU worker
whose memory or ``INFEROPT_CPU_PASS_TIME_BUDGET_S`` it does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optimizers.artifacts import ModelArtifact
from optimizers.errors import InferOptError, RecipeError
from optimizers.passes import get_pass
from optimizers.passes.base import Preflight
from optimizers.passes.llm_common import cpu_time_budget_s
from optimizers.recipe import Recipe
from webapp.jobs.services import route_recipe


@dataclass
class StepEstimate:
    index: int
    pass_name: str
    prefers_gpu: bool
    needs_gpu: bool
    cpu: Preflight
    gpu: Preflight
    fits_cpu_budget: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pass": self.pass_name,
            "prefers_gpu": self.prefers_gpu,
            "needs_gpu": self.needs_gpu,
            "cpu": _preflight_dict(self.cpu),
            "gpu": _preflight_dict(self.gpu),
            "fits_cpu_budget": self.fits_cpu_budget,
        }


@dataclass
class RecipeEstimate:
    queue: str
    cpu_time_budget_s: float
    steps: list[StepEstimate]

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "cpu_time_budget_s": self.cpu_time_budget_s,
            "steps": [step.as_dict() for step in self.steps],
        }


def estimate_recipe(model_entry, recipe_mapping: dict[str, Any]) -> RecipeEstimate:
    """Per-step CPU and GPU estimates for ``recipe_mapping`` on ``model_entry``; ``RecipeError`` if invalid."""
    raw = dict(recipe_mapping)
    raw["model"] = model_entry.reference
    raw.pop("dataset", None)
    if not raw.get("task"):
        raw["task"] = model_entry.task
    recipe = Recipe.parse(raw, input_format=model_entry.format)
    baseline = _baseline(model_entry)
    budget = cpu_time_budget_s()
    steps = []
    for index, step in enumerate(recipe.steps, start=1):
        technique = get_pass(step.pass_name)
        config = technique.parse_config(step.config)
        try:
            cpu = technique.estimate(baseline, config, on_gpu=False)
            gpu = technique.estimate(baseline, config, on_gpu=True)
        except InferOptError as error:
            raise RecipeError(f"step {index} ({step.pass_name}): {error}") from None
        steps.append(
            StepEstimate(
                index=index,
                pass_name=step.pass_name,
                prefers_gpu=technique.requires.prefers_gpu,
                needs_gpu=technique.requires.device == "cuda",
                cpu=cpu,
                gpu=gpu,
                fits_cpu_budget=None if cpu.estimated_seconds is None else cpu.estimated_seconds <= budget,
            )
        )
    return RecipeEstimate(queue=route_recipe(recipe), cpu_time_budget_s=budget, steps=steps)


def _baseline(model_entry) -> ModelArtifact:
    """The entry's folder described without hashing it (estimates need no content hash)."""
    from webapp.catalog.services import local_model_folder

    # Never train a demo model in a web request: an unbuilt one is a RecipeError naming setup_demo.
    # An upload is read from this host's input cache, fetched from storage if this host lacks it.
    try:
        folder = local_model_folder(model_entry)
    except RecipeError:
        raise
    except InferOptError as error:
        raise RecipeError(str(error)) from None
    return ModelArtifact(
        name="baseline",
        path=str(folder),
        format=model_entry.format,
        task=model_entry.task,
        sha256="",
        size_bytes=0,
    )


def _preflight_dict(result: Preflight) -> dict[str, Any]:
    return {
        "estimated_seconds": result.estimated_seconds,
        "estimated_memory_mb": result.estimated_memory_mb,
        "notes": list(result.notes),
    }
