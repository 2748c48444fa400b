"""``prune_structured`` on the real MiniLM (and the digits CNN): smaller dense models, sensitivity-ordered."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from optimizers.errors import PreflightError
from optimizers.passes import get_pass
from tests.optimizers.conftest import run_pass

# Small analysis settings keep each run to seconds on a shared 2-core machine.
FAST = {"groups_per_layer": 2, "calibration_samples": 8}


@pytest.fixture(scope="module")
def ffn_pruned(minilm, tmp_path_factory):
    return run_pass(
        "prune_structured", minilm, tmp_path_factory.mktemp("ps") / "ffn", units="ffn_neurons", target=0.5, **FAST
    )


@pytest.fixture(scope="module")
def layers_pruned(minilm, tmp_path_factory):
    return run_pass("prune_structured", minilm, tmp_path_factory.mktemp("ps") / "layers", units="layers", target=0.5)


def test_ffn_pruning_removes_exactly_the_asked_fraction_of_ffn_parameters(ffn_pruned):
    details = ffn_pruned.metadata["details"]
    removed = details["parameters_before"] - details["parameters_after"]
    # Every FFN neuron owns the same count (a row + bias of intermediate.dense, a column of output.dense),
    # and 0.5 × 1536 is a whole number per layer, so the reduction is exact: no tolerance needed.
    assert removed == details["parameters_prunable"] // 2
    assert details["parameters_before"] == 22_713_216
    assert removed == 6 * 768 * (384 + 1 + 384)
    assert details["removed_fraction"] == 0.5


def test_ffn_pruned_model_loads_with_automodel_and_its_config_has_the_new_size(ffn_pruned, metrics_of):
    from transformers import AutoModel

    config = json.loads((ffn_pruned.folder / "config.json").read_text())
    assert config["intermediate_size"] == 768
    model = AutoModel.from_pretrained(ffn_pruned.folder, local_files_only=True)
    assert sum(p.numel() for p in model.parameters()) == ffn_pruned.metadata["details"]["parameters_after"]
    assert (ffn_pruned.folder / "tokenizer.json").is_file()
    assert ffn_pruned.size_bytes < 0.9 * 90_000_000
    # Half of every FFN gone without fine-tuning: worse than the original, still an encoder of the same text.
    cosine = metrics_of(ffn_pruned)["cosine"]
    assert 0.5 < cosine < 0.999


def test_sensitivity_table_is_sorted_and_the_pruned_groups_are_the_least_sensitive_of_each_layer(ffn_pruned):
    table = ffn_pruned.metadata["details"]["sensitivity"]
    assert len(table) == 6 * 2
    assert [row["drop"] for row in table] == sorted(row["drop"] for row in table)
    assert all({"unit", "drop", "pruned"} <= set(row) for row in table)
    for layer in range(6):
        rows = [row for row in table if row["layer"] == layer]
        pruned = [row["drop"] for row in rows if row["pruned"]]
        kept = [row["drop"] for row in rows if not row["pruned"]]
        assert pruned and kept
        assert max(pruned) <= min(kept), f"layer {layer}: a more sensitive group was pruned before a less one"
        assert sum(row["pruned_units"] for row in rows) == 768


def test_layer_pruning_removes_the_least_sensitive_layers(layers_pruned, minilm):
    from transformers import AutoModel

    details = layers_pruned.metadata["details"]
    table = details["sensitivity"]
    assert [row["unit"] for row in table if row["pruned"]] == [row["unit"] for row in table[:3]]
    assert details["new_sizes"]["num_hidden_layers"] == 3
    assert sorted(details["new_sizes"]["removed_layers"]) == sorted(row["layer"] for row in table[:3])
    # All six layers are the same size, so removing 3 removes exactly half of the layer parameters.
    assert details["parameters_before"] - details["parameters_after"] == details["parameters_prunable"] // 2
    model = AutoModel.from_pretrained(layers_pruned.folder, local_files_only=True)
    assert model.config.num_hidden_layers == 3 and len(model.encoder.layer) == 3


def test_progress_is_reported_during_the_analysis(minilm, tmp_path):
    from optimizers.passes.base import PassContext

    technique = get_pass("prune_structured")
    config = technique.parse_config({"units": "layers", "target": 0.2, "calibration_samples": 4})
    technique.preflight(minilm, config)
    messages: list[tuple[float, str]] = []
    technique.run(minilm, config, PassContext(work_dir=tmp_path / "p", progress=lambda f, m: messages.append((f, m))))
    analysis = [m for _, m in messages if m.startswith("sensitivity")]
    assert len(analysis) == 6
    assert [f for f, _ in messages] == sorted(f for f, _ in messages)


@pytest.mark.parametrize("target", [0.0, 1.0, -0.2, 1.5])
def test_target_outside_zero_one_is_refused(target):
    with pytest.raises(ValidationError, match="strictly between 0 and 1"):
        get_pass("prune_structured").parse_config({"target": target})


def test_preflight_refuses_a_target_outside_zero_one_even_when_the_schema_was_bypassed(minilm):
    technique = get_pass("prune_structured")
    config = technique.Config.model_construct(units="layers", target=1.0, groups_per_layer=8, calibration_samples=8)
    with pytest.raises(PreflightError, match="strictly between 0 and 1"):
        technique.preflight(minilm, config)


def test_heads_on_bert_are_refused_with_the_reason_and_the_allowed_units(minilm, tmp_path):
    with pytest.raises(PreflightError, match="BERT encoder.*transformers 5.*allowed units.*ffn_neurons, layers"):
        run_pass("prune_structured", minilm, tmp_path / "h", units="heads")
    assert not (tmp_path / "h").exists()


def test_channels_on_bert_are_refused(minilm, tmp_path):
    with pytest.raises(PreflightError, match="BERT encoder, which has no 'channels'"):
        run_pass("prune_structured", minilm, tmp_path / "c", units="channels")


def test_a_target_too_small_to_remove_one_layer_is_refused(minilm, tmp_path):
    with pytest.raises(PreflightError, match="removes 0 of 6 layers"):
        run_pass("prune_structured", minilm, tmp_path / "small", units="layers", target=0.05)


def test_cnn_channel_pruning_gives_a_smaller_cnn_that_loads_and_still_classifies(digits_cnn, tmp_path):
    from optimizers.evaluation.images import digits_split
    from optimizers.models import load_torch_module, read_torch_config
    from optimizers.models.training import accuracy

    before = read_torch_config(digits_cnn)["channels"]
    pruned = run_pass("prune_structured", digits_cnn, tmp_path / "cnn", units="channels", target=0.5)
    details = pruned.metadata["details"]
    after = read_torch_config(pruned)["channels"]
    assert after == [c - round(c / 2) for c in before]
    assert details["removed_fraction"] == 0.5
    model = load_torch_module(pruned)
    assert sum(p.numel() for p in model.parameters()) == details["parameters_after"]
    # Halving each conv's channels removes half of conv 0, about three quarters of conv 1 (inputs and outputs
    # halve) and half of the classifier's first Linear: at least half of the prunable parameters.
    removed = details["parameters_before"] - details["parameters_after"]
    assert 0.5 * details["parameters_prunable"] <= removed <= 0.8 * details["parameters_prunable"]
    assert details["metric"].startswith("accuracy drop")
    images, labels = digits_split("eval")
    assert accuracy(model, images, labels) > 0.5  # pruned without fine-tuning: degraded, not destroyed
    for conv in range(len(before)):
        rows = [row for row in details["sensitivity"] if row["layer"] == conv]
        pruned_rows = [(row["drop"], row.get("kl", 0.0)) for row in rows if row["pruned"]]
        kept_rows = [(row["drop"], row.get("kl", 0.0)) for row in rows if not row["pruned"]]
        assert max(pruned_rows) <= min(kept_rows)


def test_heads_and_ffn_neurons_on_a_cnn_are_refused_naming_the_cnn_and_its_units(digits_cnn, tmp_path):
    for units in ("heads", "ffn_neurons", "layers"):
        with pytest.raises(
            PreflightError, match=f"is a CNN, which has no '{units}'.*allowed units for a CNN: channels"
        ):
            run_pass("prune_structured", digits_cnn, tmp_path / units, units=units)
