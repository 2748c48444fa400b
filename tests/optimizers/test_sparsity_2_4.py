"""sparsity_2_4 on zoo:digits-cnn: the pattern holds in every group of four, the model reloads."""

from __future__ import annotations

import pytest
import torch

from optimizers.errors import PreflightError
from optimizers.evaluation import evaluator_for
from optimizers.models import load_torch_module
from optimizers.passes import get_pass
from optimizers.passes.sparsity_2_4 import follows_2_4, mask_2_4
from tests.optimizers.conftest import run_pass


def test_mask_keeps_the_two_largest_magnitudes_of_each_group():
    weight = torch.tensor([[0.1, -0.9, 0.5, 0.2, 3.0, 0.0, -4.0, 1.0]])
    assert mask_2_4(weight).tolist() == [[False, True, True, False, True, False, True, False]]
    with pytest.raises(ValueError, match="multiple of 4"):
        mask_2_4(torch.ones(2, 6))


def test_every_group_of_four_has_two_zeros_after_the_pass(digits_cnn, tmp_path):
    sparse = run_pass("sparsity_2_4", digits_cnn, tmp_path / "s", finetune_steps=100)
    module = load_torch_module(sparse)
    details = sparse.metadata["details"]
    masked = {row["name"] for row in details["layers"]}
    assert masked == {"features.2", "classifier.1", "classifier.3"}
    assert details["skipped_layers"] == [{"name": "features.0", "reason": "row length 9 is not a multiple of 4"}]
    for name, layer in module.named_modules():
        if name in masked:
            rows = layer.weight.detach().reshape(layer.weight.shape[0], -1, 4)
            assert ((rows != 0).sum(dim=2) <= 2).all(), name
            assert follows_2_4(layer.weight)
    assert details["sparsity"] == pytest.approx(0.5, abs=0.001)
    assert details["training_curve"][-1]["step"] == 100
    evaluator = evaluator_for("image-classification", dataset=None, max_samples=10_000, batch_size=64)
    evaluator.evaluate(digits_cnn)
    assert evaluator.evaluate(sparse)["accuracy"] > 0.95
    if not torch.cuda.is_available():
        assert any("compute capability ≥ 8.0" in note for note in details["notes"])
        assert "gpu" not in details


def test_refuses_a_task_it_cannot_edit(digits_cnn):
    technique = get_pass("sparsity_2_4")
    with pytest.raises(PreflightError, match="does not support task causal-lm"):
        technique.preflight(digits_cnn.model_copy(update={"task": "causal-lm"}), technique.parse_config({}))
    with pytest.raises(PreflightError, match="is a torch feature-extraction model"):
        technique.preflight(digits_cnn.model_copy(update={"task": "feature-extraction"}), technique.parse_config({}))
