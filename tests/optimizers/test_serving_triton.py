"""Triton model repository export: config.pbtxt parses against Triton's own ModelConfig proto."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError
from optimizers.serving.batching import BatchingRecommendation
from optimizers.serving.triton import (
    TritonSettings,
    config_pbtxt,
    export_repository,
    onnx_io,
    settings_from_recommendation,
    zip_repository,
)
from tests.optimizers.conftest import run_pass


def triton_proto():
    """tritonclient's generated ``model_config_pb2`` (``inference.ModelConfig``, ``inference.DataType``).

    Loaded by file path: ``import tritonclient.grpc`` needs grpcio, which the dev environment does not install.
    """
    tritonclient = pytest.importorskip("tritonclient")
    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(text: str):
    return text_format.Parse(text, triton_proto().ModelConfig())


def _graph(tmp_path: Path, *, batch_dim) -> Path:
    """Two inputs (int64 ids with symbolic batch/sequence, a bool mask) → float16 scores and a scalar."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch_dim, "sequence"])
    mask = helper.make_tensor_value_info('attention"mask', TensorProto.BOOL, [batch_dim, "sequence"])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT16, [batch_dim, 4])
    count = helper.make_tensor_value_info("count", TensorProto.INT64, [])
    weight = numpy_helper.from_array(np.array([1.0], dtype=np.float16), "weight")  # raw_data: can go external
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids16"], to=TensorProto.FLOAT16),
        helper.make_node("Mul", ["ids16", "weight"], ["scaled"]),
        helper.make_node("Slice", ["scaled", "starts", "ends", "axes"], ["scores"]),
        helper.make_node("Size", ['attention"mask'], ["count"]),
    ]
    consts = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [4]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(nodes, "g", [ids, mask], [scores, count], initializer=[weight, *consts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # Initializers also listed as graph inputs (old exporters do this): they must not become Triton inputs.
    model.graph.input.append(helper.make_tensor_value_info("weight", TensorProto.FLOAT16, [1]))
    folder = tmp_path / "onnx"
    folder.mkdir()
    onnx.save(model, folder / "model.onnx")
    return folder / "model.onnx"


def test_onnx_io_reads_names_types_and_dynamic_dims(tmp_path):
    inputs, outputs = onnx_io(_graph(tmp_path, batch_dim="batch"))
    assert [(s.name, s.data_type, s.dims) for s in inputs] == [
        ("input_ids", "TYPE_INT64", [-1, -1]),
        ('attention"mask', "TYPE_BOOL", [-1, -1]),
    ]
    assert [(s.name, s.data_type, s.dims) for s in outputs] == [
        ("scores", "TYPE_FP16", [-1, 4]),
        ("count", "TYPE_INT64", []),
    ]


def test_config_with_a_fixed_first_axis_is_not_batched_and_parses(tmp_path):
    inputs, outputs = onnx_io(_graph(tmp_path, batch_dim=1))
    text = config_pbtxt("m", inputs, outputs, TritonSettings(max_batch_size=8, max_queue_delay_microseconds=100))
    config = parse(text)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, -1]
    assert config.input[1].name == 'attention"mask'  # quotes escaped in the text format
    assert list(config.output[1].dims) == [1] and list(config.output[1].reshape.shape) == []


def test_config_from_a_recommendation_parses_with_dynamic_batching(tmp_path):
    inputs, outputs = onnx_io(_graph(tmp_path, batch_dim="batch"))
    outputs = outputs[:1]  # a scalar output has no batch axis: keep the batchable one
    recommendation = BatchingRecommendation(
        max_batch_size=16, max_queue_delay_ms=2.5, preferred_batch_sizes=[16], throughput_per_s=900.0,
        p95_ms=9.0, offered_rate_per_s=1000.0, p95_budget_ms=10.0, reason="test",
    )  # fmt: skip
    settings = settings_from_recommendation(recommendation, instance_kind="KIND_GPU", instance_count=2)
    config = parse(config_pbtxt("text-encoder_v1.0", inputs, outputs, settings))
    assert config.name == "text-encoder_v1.0" and config.backend == "onnxruntime"
    assert config.max_batch_size == 16
    assert list(config.input[0].dims) == [-1]  # batch axis left to Triton
    assert config.input[0].data_type == triton_proto().DataType.Value("TYPE_INT64")
    assert list(config.dynamic_batching.preferred_batch_size) == [16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2500
    group = config.instance_group[0]
    assert group.count == 2 and group.kind == type(group).Kind.Value("KIND_GPU")


def test_bad_model_names_are_refused(tmp_path):
    inputs, outputs = onnx_io(_graph(tmp_path, batch_dim="batch"))
    for name in ("", "../x", ".hidden", "a/b", "x" * 200):
        with pytest.raises(ValueError, match="invalid Triton model name"):
            config_pbtxt(name, inputs, outputs, TritonSettings())


def test_repository_of_the_exported_digits_cnn_parses_and_zips(digits_cnn, tmp_path):
    onnx_artifact = run_pass("onnx_export", digits_cnn, tmp_path / "onnx")
    settings = TritonSettings(max_batch_size=8, max_queue_delay_microseconds=1000, preferred_batch_sizes=[8, 64])
    folder = export_repository(onnx_artifact, tmp_path / "repo", model_name="digits", settings=settings)
    config = parse((folder / "config.pbtxt").read_text())
    graph_inputs, graph_outputs = onnx_io(onnx_artifact.onnx_file)
    assert [item.name for item in config.input] == [spec.name for spec in graph_inputs]
    assert [item.name for item in config.output] == [spec.name for spec in graph_outputs]
    assert list(config.dynamic_batching.preferred_batch_size) == [8]  # 64 > max_batch_size: dropped
    assert (folder / "1" / "model.onnx").read_bytes() == onnx_artifact.onnx_file.read_bytes()
    first = zip_repository(tmp_path / "repo", tmp_path / "a.zip")
    second = zip_repository(tmp_path / "repo", tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()
    assert sorted(zipfile.ZipFile(first).namelist())[:2] == ["digits/1/model.onnx", "digits/config.pbtxt"]


def test_export_refuses_a_non_onnx_artifact(digits_cnn, tmp_path):
    with pytest.raises(PreflightError, match="needs an ONNX artifact"):
        export_repository(digits_cnn, tmp_path, model_name="m", settings=TritonSettings())


def test_external_data_files_travel_with_the_model(tmp_path):
    path = _graph(tmp_path, batch_dim="batch")
    model = onnx.load(path)
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)  # fmt: skip
    artifact = ModelArtifact.model_validate(
        {
            "name": "ext",
            "path": str(path.parent),
            "format": "onnx",
            "task": "feature-extraction",
            "sha256": "0" * 64,
            "size_bytes": 1,
        }  # fmt: skip
    )
    folder = export_repository(artifact, tmp_path / "repo", model_name="ext", settings=TritonSettings())
    assert (folder / "1" / "weights.bin").is_file()
