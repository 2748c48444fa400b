"""The recommendation table: first matching rule wins; every rule is reachable."""

from __future__ import annotations

from optimizers.recipe import Recipe
from optimizers.recommend import RULES, ModelFacts, recommend


def test_cpu_encoder_gets_int8_first_and_the_recipe_is_valid():
    rule, advice = recommend(ModelFacts(task="feature-extraction", target="cpu"))
    assert "INT8" in advice.title and "per-channel" in advice.title
    Recipe.parse({"model": "zoo:minilm", "steps": advice.steps})


def test_llms_get_gguf_on_cpu_and_int4_on_gpu():
    assert "Q4_K_M" in recommend(ModelFacts(task="causal-lm", target="cpu"))[1].title
    assert "W4A16" in recommend(ModelFacts(task="causal-lm", target="gpu"))[1].title


def test_a_heavy_pipeline_is_fixed_before_the_model():
    rule, advice = recommend(ModelFacts(task="feature-extraction", outside_model_share=0.45))
    assert rule is RULES[0] and advice.steps == []


def test_unknown_tasks_fall_through_to_measure_first():
    rule, advice = recommend(ModelFacts(task="image-classification", target="cpu"))
    assert rule is RULES[-1] and advice.title == "Measure first"


def test_every_recommended_recipe_with_registered_passes_is_valid():
    from optimizers.passes import all_passes

    known = {cls.name for cls in all_passes()}
    for rule in RULES:
        steps = rule.recommendation.steps
        if steps and all(step["pass"] in known for step in steps):
            Recipe.parse({"model": "zoo:minilm", "steps": steps}, input_format="hf")
