"""Artifact packaging (deterministic, atomic) and model resolution (safe references only)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizers.errors import RecipeError, UnsafeInputError
from optimizers.packaging import package_artifact
from optimizers.resolve import check_onnx_external_data, resolve_model, task_of_folder


def test_package_is_deterministic_and_carries_the_manifest(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"graph")
    (folder / "sub" / "tokenizer.json").write_text("{}")
    first = package_artifact(folder, {"metrics": {"cosine": 0.99}}, tmp_path / "a.zip")
    second = package_artifact(folder, {"metrics": {"cosine": 0.99}}, tmp_path / "b.zip")
    assert first == second
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert sorted(archive.namelist()) == ["manifest.json", "model.onnx", "sub/tokenizer.json"]
        assert json.loads(archive.read("manifest.json"))["metrics"]["cosine"] == 0.99
    assert not list(tmp_path.glob(".partial-*"))


def _onnx_with_external_location(folder, location: str):
    folder.mkdir(parents=True, exist_ok=True)
    tensor = numpy_helper.from_array(np.zeros(4, dtype=np.float32), name="w")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    node = helper.make_node("Identity", ["w"], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [tensor])
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin", "/etc/passwd"])
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path, location):
    path = _onnx_with_external_location(tmp_path / "m", location)
    with pytest.raises(UnsafeInputError, match="outside the model folder"):
        check_onnx_external_data(path)


def test_onnx_external_data_through_a_symlink_is_refused(tmp_path):
    (tmp_path / "outside").mkdir()
    path = _onnx_with_external_location(tmp_path / "m", "link/weights.bin")
    (tmp_path / "m" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafeInputError):
        check_onnx_external_data(path)


def test_onnx_external_data_inside_the_folder_is_accepted(tmp_path):
    check_onnx_external_data(_onnx_with_external_location(tmp_path / "m", "weights.bin"))
    assert onnx.load(str(tmp_path / "m" / "model.onnx"), load_external_data=False).graph.node


def test_resolve_refuses_unknown_references(tmp_path):
    with pytest.raises(RecipeError, match="unknown demo model"):
        resolve_model("zoo:gpt-17")
    with pytest.raises(RecipeError, match="model not found"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(RecipeError, match="tokenizer"):
        resolve_model(str(_onnx_with_external_location(tmp_path / "bare", "weights.bin")))


def test_task_is_read_from_architectures(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert task_of_folder(tmp_path) == "causal-lm"
    assert resolve_model("zoo:minilm").task == "feature-extraction"
