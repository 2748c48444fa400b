"""Which Celery queue a recipe is sent to (``webapp.jobs.services.queue_for``)."""

from __future__ import annotations

import pytest

from optimizers.recipe import Recipe
from webapp.jobs.services import queue_for


def recipe(*passes: str) -> Recipe:
    return Recipe.parse({"model": "zoo:minilm", "steps": [{"pass": name} for name in passes]}, input_format="hf")


@pytest.mark.parametrize("name", ["gptq", "awq", "w8a8"])
def test_gpu_preferring_pass_stays_on_cpu_while_no_gpu_worker_is_configured(settings, name):
    settings.INFEROPT_GPU_QUEUE_ENABLED = False
    assert queue_for(recipe(name)) == "cpu"


@pytest.mark.parametrize("name", ["gptq", "awq", "w8a8"])
def test_gpu_preferring_pass_goes_to_the_gpu_queue_once_enabled(settings, name):
    settings.INFEROPT_GPU_QUEUE_ENABLED = True
    assert queue_for(recipe(name)) == "gpu"


def test_cpu_passes_stay_on_cpu_even_with_a_gpu_queue(settings):
    settings.INFEROPT_GPU_QUEUE_ENABLED = True
    assert queue_for(recipe("torch_quantize_dynamic")) == "cpu"
    assert queue_for(recipe("int4_weight_only")) == "cpu"
