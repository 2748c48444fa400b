"""zoo:digits-cnn and the image-classification foundation: data, storage, evaluation, export, runtimes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError, RecipeError, UnsafeInputError
from optimizers.evaluation import evaluator_for
from optimizers.evaluation.images import SPLITS, check_images_disjoint, digits_image_split, digits_split
from optimizers.gates import default_rules
from optimizers.models import load_torch_module, read_torch_config, save_torch_module
from optimizers.models.digits_cnn import build, default_config
from optimizers.recipe import Recipe
from optimizers.runtimes import load_runtime
from tests.optimizers.conftest import run_pass


@pytest.fixture(scope="module")
def digits_onnx(digits_cnn, tmp_path_factory) -> ModelArtifact:
    return run_pass("onnx_export", digits_cnn, tmp_path_factory.mktemp("digits") / "onnx")


def full_eval(artifact: ModelArtifact, baseline: ModelArtifact) -> dict[str, float]:
    evaluator = evaluator_for("image-classification", dataset=None, max_samples=10_000, batch_size=64)
    evaluator.evaluate(baseline)
    return evaluator.evaluate(artifact)


def test_splits_are_disjoint_by_content_hash_and_cover_every_class():
    splits = {name: digits_image_split(name) for name in SPLITS}
    assert sum(len(split) for split in splits.values()) == 1797
    for first in SPLITS:
        for second in SPLITS:
            if first != second:
                assert not set(splits[first].hashes) & set(splits[second].hashes)
        assert set(splits[first].labels.tolist()) == set(range(10))
    check_images_disjoint(splits["calibration"], splits["eval"])
    with pytest.raises(RecipeError, match="shares"):
        check_images_disjoint(splits["eval"], splits["eval"])


def test_digits_split_returns_normalised_nchw_float32_and_int64_labels():
    images, labels = digits_split("eval")
    assert images.dtype == np.float32 and images.shape[1:] == (1, 8, 8)
    assert labels.dtype == np.int64 and len(labels) == len(images)
    assert images.min() >= 0.0 and images.max() <= 1.0
    again, _ = digits_split("eval")
    assert np.array_equal(images, again)


def test_zoo_build_reaches_97_percent_and_is_a_torch_artifact(digits_cnn):
    assert (digits_cnn.format, digits_cnn.task) == ("torch", "image-classification")
    files = {path.name for path in digits_cnn.folder.iterdir()}
    assert {"config.json", "model.safetensors", "digits_cnn.json"} <= files
    assert not any(name.endswith((".pt", ".pth", ".bin", ".pkl")) for name in files)
    record = json.loads((digits_cnn.folder / "digits_cnn.json").read_text())
    assert record["eval_accuracy"] >= 0.97
    metrics = full_eval(digits_cnn, digits_cnn)
    assert metrics["accuracy"] >= 0.97 and metrics["eval_samples"] == 336
    assert metrics["top1_agreement"] == 1.0 and metrics["kl_divergence"] == 0.0


def test_zoo_build_is_cached_and_deterministic(digits_cnn, tmp_path, monkeypatch):
    from optimizers.zoo import zoo_model_folder

    messages = []
    folder, task = zoo_model_folder("zoo:digits-cnn", progress=lambda fraction, message: messages.append(message))
    assert folder == digits_cnn.folder and task == "image-classification"
    assert messages == [], "a cached model must not be retrained"
    monkeypatch.setenv("INFEROPT_ZOO_DIR", str(tmp_path / "zoo"))
    with pytest.raises(RecipeError, match="not built yet"):
        zoo_model_folder("zoo:digits-cnn", build=False)
    fresh, _ = zoo_model_folder("zoo:digits-cnn", progress=lambda fraction, message: messages.append(message))
    assert fresh != digits_cnn.folder
    assert any(message.startswith("step ") and "loss" in message for message in messages)
    assert (fresh / "model.safetensors").read_bytes() == (digits_cnn.folder / "model.safetensors").read_bytes()
    assert (fresh / "config.json").read_bytes() == (digits_cnn.folder / "config.json").read_bytes()


def test_torch_format_round_trips_other_channel_counts(tmp_path):
    config = default_config(channels=[5, 7, 3], hidden=11)
    module = build(config)
    save_torch_module(module, config, tmp_path / "small")
    loaded = load_torch_module(tmp_path / "small")
    assert read_torch_config(tmp_path / "small")["channels"] == [5, 7, 3]
    assert loaded.features[4].out_channels == 3 and loaded.classifier[1].out_features == 11
    images, _ = digits_split("calibration")
    import torch

    with torch.inference_mode():
        assert torch.equal(module.eval()(torch.from_numpy(images[:4])), loaded(torch.from_numpy(images[:4])))


def test_torch_loader_refuses_unknown_architectures_and_mismatched_weights(digits_cnn, tmp_path):
    import shutil

    folder = tmp_path / "odd"
    shutil.copytree(digits_cnn.folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "inferopt_architecture": "os.system"}))
    with pytest.raises(UnsafeInputError, match="architecture"):
        load_torch_module(folder)
    (folder / "config.json").write_text(json.dumps({**config, "channels": [8, 32]}))
    with pytest.raises(UnsafeInputError, match="do not match"):
        load_torch_module(folder)


def test_evaluator_measures_a_worse_model_against_the_baseline(digits_cnn, tmp_path):
    import torch

    torch.manual_seed(1)
    config = read_torch_config(digits_cnn)
    save_torch_module(build(config), config, tmp_path / "random")
    untrained = ModelArtifact.from_folder(
        tmp_path / "random", name="random", format="torch", task="image-classification"
    )
    metrics = full_eval(untrained, digits_cnn)
    assert metrics["accuracy"] < 0.5 and metrics["top1_agreement"] < 0.5
    assert metrics["kl_divergence"] > 0.5
    assert metrics["accuracy_ci_low"] <= metrics["accuracy"] <= metrics["accuracy_ci_high"]


def test_onnx_export_of_the_cnn_has_a_dynamic_batch_and_matches_pytorch(digits_cnn, digits_onnx):
    graph = onnx.load(str(digits_onnx.onnx_file)).graph
    assert [tensor.name for tensor in graph.input] == ["pixel_values"]
    assert [tensor.name for tensor in graph.output] == ["logits"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [dim.dim_value for dim in dims[1:]] == [1, 8, 8]
    assert digits_onnx.metadata["verified_max_abs_diff"] < 1e-4
    assert digits_onnx.parent_sha256 == digits_cnn.sha256
    metrics = full_eval(digits_onnx, digits_cnn)
    assert metrics["top1_agreement"] == 1.0 and metrics["kl_divergence"] < 1e-6


def test_runtimes_run_torch_and_onnx_image_models(digits_cnn, digits_onnx):
    images, _ = digits_split("eval")
    torch_runtime, ort_runtime = load_runtime(digits_cnn), load_runtime(digits_onnx, allow_spinning=False)
    assert torch_runtime.name == "pytorch-eager" and ort_runtime.name == "onnxruntime-cpu"
    for batch in (1, 5):
        expected = torch_runtime.forward({"pixel_values": images[:batch]})
        got = ort_runtime.forward({"pixel_values": images[:batch]})
        assert expected.shape == got.shape == (batch, 10)
        assert np.allclose(expected, got, atol=1e-4)


def test_onnx_export_refuses_an_hf_model_of_another_task(digits_cnn):
    technique = __import__("optimizers.passes", fromlist=["get_pass"]).get_pass("onnx_export")
    wrong = digits_cnn.model_copy(update={"task": "feature-extraction"})
    with pytest.raises(PreflightError, match="image-classification only"):
        technique.preflight(wrong, technique.parse_config({}))


def test_recipes_know_the_torch_format_of_the_zoo_cnn():
    recipe = Recipe.parse(
        {"model": "zoo:digits-cnn", "steps": [{"pass": "prune_unstructured"}, {"pass": "onnx_export"}]}
    )
    assert [step.pass_name for step in recipe.steps] == ["prune_unstructured", "onnx_export"]
    with pytest.raises(RecipeError, match="receives torch"):
        Recipe.parse({"model": "zoo:digits-cnn", "steps": [{"pass": "ort_quantize_dynamic"}]})
    with pytest.raises(RecipeError, match="receives hf"):
        Recipe.parse({"model": "zoo:minilm", "steps": [{"pass": "prune_unstructured"}, {"pass": "qat"}]})


def test_default_gate_for_image_classification_bounds_the_accuracy_drop():
    rules = default_rules("image-classification")
    assert [(rule.metric, rule.kind, rule.threshold) for rule in rules] == [("accuracy", "absolute_drop", 0.01)]
