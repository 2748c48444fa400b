"""Recipe validation: everything checkable before running fails early with a readable message."""

from __future__ import annotations

import pytest

from optimizers.errors import RecipeError
from optimizers.recipe import Recipe

YAML = """
model: zoo:minilm
steps:
  - pass: onnx_export
  - pass: ort_quantize_dynamic
    per_channel: true
gate:
  - {metric: cosine, kind: absolute_drop, threshold: 0.01}
benchmark: {batch_sizes: [1, 8], seq_len: 128}
"""


def test_yaml_recipe_parses_with_typed_steps_and_gate():
    recipe = Recipe.from_yaml(YAML)
    assert [step.pass_name for step in recipe.steps] == ["onnx_export", "ort_quantize_dynamic"]
    assert recipe.steps[1].config == {"per_channel": True}
    assert recipe.gate[0].threshold == 0.01
    assert recipe.benchmark.batch_sizes == [1, 8]


def test_round_trip_through_to_raw():
    recipe = Recipe.from_yaml(YAML)
    assert Recipe.parse(recipe.to_raw()).to_raw() == recipe.to_raw()


def test_unknown_pass_names_the_known_ones():
    with pytest.raises(RecipeError, match="unknown pass 'quantize_magic'.*onnx_export"):
        Recipe.parse({"model": "zoo:minilm", "steps": [{"pass": "quantize_magic"}]})


def test_config_value_out_of_range_is_refused():
    with pytest.raises(RecipeError, match="step 1 \\(onnx_export\\): opset"):
        Recipe.parse({"model": "zoo:minilm", "steps": [{"pass": "onnx_export", "opset": 9}]})


def test_unknown_config_key_is_refused():
    with pytest.raises(RecipeError, match="per_chanel"):
        Recipe.parse(
            {
                "model": "zoo:minilm",
                "steps": [{"pass": "onnx_export"}, {"pass": "ort_quantize_dynamic", "per_chanel": True}],
            }
        )


def test_step_that_cannot_take_the_previous_format_is_refused():
    with pytest.raises(RecipeError, match="step 1 \\(ort_quantize_dynamic\\) takes onnx models, but receives hf"):
        Recipe.parse({"model": "zoo:minilm", "steps": [{"pass": "ort_quantize_dynamic"}]})


def test_bad_benchmark_settings_and_yaml():
    with pytest.raises(RecipeError, match="batch_sizes"):
        Recipe.parse({"model": "zoo:minilm", "benchmark": {"batch_sizes": [0]}})
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.from_yaml("model: [unclosed")
    with pytest.raises(RecipeError, match="'pass' key"):
        Recipe.parse({"model": "zoo:minilm", "steps": [{"per_channel": True}]})
