"""prune_unstructured on zoo:digits-cnn (and MiniLM): actual sparsity, reload, fine-tuning, refusals."""

from __future__ import annotations

import pydantic
import pytest

from optimizers.errors import PreflightError, RecipeError
from optimizers.evaluation import evaluator_for
from optimizers.models import load_torch_module
from optimizers.passes import get_pass
from optimizers.passes.module_edit import zero_fraction
from optimizers.recipe import Recipe
from optimizers.runtimes import load_runtime
from tests.optimizers.conftest import run_pass


def accuracy_of(artifact, baseline) -> dict[str, float]:
    evaluator = evaluator_for("image-classification", dataset=None, max_samples=10_000, batch_size=64)
    evaluator.evaluate(baseline)
    return evaluator.evaluate(artifact)


def pruned_layers(module):
    from torch import nn

    return [layer for layer in module.modules() if isinstance(layer, nn.Linear | nn.Conv2d)]


def test_global_pruning_reaches_the_target_sparsity_and_reloads(digits_cnn, tmp_path):
    pruned = run_pass("prune_unstructured", digits_cnn, tmp_path / "p", sparsity=0.6)
    assert (pruned.format, pruned.task, pruned.produced_by) == ("torch", "image-classification", "prune_unstructured")
    module = load_torch_module(pruned)
    weights = [layer.weight for layer in pruned_layers(module)]
    zeros = sum(int((weight == 0).sum()) for weight in weights)
    assert zeros / sum(weight.numel() for weight in weights) == pytest.approx(0.6, abs=0.005)
    details = pruned.metadata["details"]
    assert details["sparsity"] == pytest.approx(0.6, abs=0.005) and details["target_sparsity"] == 0.6
    assert any("no speedup" in note for note in details["notes"])
    assert not list(pruned.folder.glob("*.pt")) and (pruned.folder / "model.safetensors").is_file()
    assert "weight_orig" not in "".join(module.state_dict()), "masks must be made permanent"
    assert accuracy_of(pruned, digits_cnn)["accuracy"] > 0.9


def test_per_layer_pruning_prunes_every_layer_alike(digits_cnn, tmp_path):
    pruned = run_pass("prune_unstructured", digits_cnn, tmp_path / "p", sparsity=0.5, scope="per_layer")
    for layer in pruned_layers(load_torch_module(pruned)):
        assert zero_fraction(layer.weight) == pytest.approx(0.5, abs=0.02)
    assert [row["sparsity"] for row in pruned.metadata["details"]["layers"]] == pytest.approx([0.5] * 4, abs=0.02)


def test_fine_tuning_recovers_accuracy_and_records_the_curve(digits_cnn, tmp_path):
    plain = run_pass("prune_unstructured", digits_cnn, tmp_path / "plain", sparsity=0.9, scope="per_layer")
    tuned = run_pass(
        "prune_unstructured", digits_cnn, tmp_path / "tuned", sparsity=0.9, scope="per_layer", finetune_steps=150
    )
    curve = tuned.metadata["details"]["training_curve"]
    assert curve[-1]["step"] == 150 and all({"step", "loss"} == set(point) for point in curve)
    assert tuned.metadata["details"]["sparsity"] == pytest.approx(0.9, abs=0.01), "fine-tuning must keep the zeros"
    assert accuracy_of(tuned, digits_cnn)["accuracy"] > accuracy_of(plain, digits_cnn)["accuracy"]


@pytest.mark.parametrize("sparsity", [0.0, 1.0, 1.5, -0.2])
def test_sparsity_outside_zero_one_is_refused(sparsity):
    with pytest.raises(pydantic.ValidationError, match="strictly between 0 and 1"):
        get_pass("prune_unstructured").parse_config({"sparsity": sparsity})
    with pytest.raises(RecipeError, match="strictly between 0 and 1"):
        Recipe.parse({"model": "zoo:digits-cnn", "steps": [{"pass": "prune_unstructured", "sparsity": sparsity}]})


def test_refuses_onnx_models_and_fine_tuning_a_sentence_encoder(digits_cnn, minilm, tmp_path):
    technique = get_pass("prune_unstructured")
    onnx_model = digits_cnn.model_copy(update={"format": "onnx"})
    with pytest.raises(PreflightError, match="takes torch, hf models"):
        technique.preflight(onnx_model, technique.parse_config({}))
    with pytest.raises(PreflightError, match="finetune_steps: 0"):
        technique.preflight(minilm, technique.parse_config({"finetune_steps": 10}))
    assert not (tmp_path / "never").exists()


def test_prunes_minilm_without_fine_tuning(minilm, metrics_of, tmp_path):
    pruned = run_pass("prune_unstructured", minilm, tmp_path / "m", sparsity=0.3, layer_types=["linear"])
    assert pruned.format == "hf" and (pruned.folder / "tokenizer.json").is_file()
    assert pruned.metadata["details"]["sparsity"] == pytest.approx(0.3, abs=0.005)
    assert any("no fine-tuning" in note for note in pruned.metadata["details"]["notes"])
    load_runtime(pruned)
    assert 0.8 < metrics_of(pruned)["cosine"] < 1.0
