"""tensorrt_build's pure parts: optimization profiles from the recipe, engine metadata, portability.

TensorRT itself cannot be installed here; the build and the runtime are exercised only by
tests/gpu (skipped without CUDA and TensorRT).
"""

from __future__ import annotations

import pytest

from optimizers.errors import PreflightError
from optimizers.passes import get_pass
from optimizers.passes.tensorrt_build import (
    ShapeRange,
    TensorRTBuildConfig,
    build_profile,
    describe_target,
    engine_metadata,
    graph_inputs,
    portability_problem,
)

BERT_INPUTS = {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}


@pytest.fixture
def onnx_file(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    pixels = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 3, 224, 224])
    out = helper.make_tensor_value_info("out", TensorProto.INT64, ["batch", "sequence"])
    weight = helper.make_tensor("weight", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("Add", ["input_ids", "attention_mask"], ["out"])],
        "g",
        [ids, mask, pixels, helper.make_tensor_value_info("weight", TensorProto.INT64, [1])],
        [out],
        initializer=[weight],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_graph_inputs_reads_names_and_dims_without_initializers(onnx_file):
    assert graph_inputs(onnx_file) == {
        "input_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "sequence"],
        "pixels": [None, 3, 224, 224],
    }


def test_default_profile_covers_batch_and_sequence_and_keeps_static_dims(onnx_file):
    profile = build_profile(graph_inputs(onnx_file), {}, seq_len=128, max_seq_len=256)
    assert profile["input_ids"] == ShapeRange(min=[1, 1], opt=[8, 128], max=[32, 256])
    assert profile["pixels"] == ShapeRange(min=[1, 3, 224, 224], opt=[8, 3, 224, 224], max=[32, 3, 224, 224])


def test_recipe_shapes_override_the_defaults():
    shapes = {"input_ids": {"min": [1, 16], "opt": [4, 64], "max": [16, 128]}}
    profile = build_profile(BERT_INPUTS, shapes)
    assert profile["input_ids"] == ShapeRange(min=[1, 16], opt=[4, 64], max=[16, 128])
    assert profile["attention_mask"] == ShapeRange(min=[1, 1], opt=[8, 128], max=[32, 512])


@pytest.mark.parametrize(
    "shapes, message",
    [
        ({"token_ids": {"min": [1, 1], "opt": [1, 1], "max": [1, 1]}}, "graph does not have: token_ids"),
        ({"input_ids": {"min": [1], "opt": [1], "max": [1]}}, "has rank 2 in the ONNX graph"),
        ({"input_ids": {"min": [1, 64], "opt": [1, 32], "max": [1, 128]}}, "need min ≤ opt ≤ max, got 64, 32, 128"),
        ({"input_ids": {"min": [0, 1], "opt": [1, 1], "max": [1, 1]}}, "must be ≥ 1"),
        ({"input_ids": {"min": [1, 1], "opt": [1, 1, 1], "max": [1, 1]}}, "same rank"),
    ],
)
def test_bad_shapes_are_refused_naming_the_input(shapes, message):
    with pytest.raises(PreflightError, match=message.replace("(", r"\(")):
        build_profile(BERT_INPUTS, shapes)


def test_a_fixed_dimension_must_stay_fixed(onnx_file):
    shapes = {"pixels": {"min": [1, 3, 112, 112], "opt": [1, 3, 224, 224], "max": [1, 3, 224, 224]}}
    with pytest.raises(PreflightError, match="input 'pixels' axis 2 is fixed at 224"):
        build_profile(graph_inputs(onnx_file), shapes)


def test_a_dynamic_axis_beyond_batch_and_sequence_needs_explicit_shapes():
    with pytest.raises(PreflightError, match="input 'image' axis 2 is dynamic"):
        build_profile({"image": [None, 3, "height", "width"]}, {})


def test_config_validates_shape_ranges_at_parse_time():
    with pytest.raises(ValueError, match="min ≤ opt ≤ max"):
        TensorRTBuildConfig.model_validate({"shapes": {"x": {"min": [2], "opt": [1], "max": [4]}}})


def test_pass_declares_gpu_and_tensorrt_requirements():
    technique = get_pass("tensorrt_build")
    assert technique.requires.device == "cuda" and technique.requires.packages == ("tensorrt",)
    assert technique.input_formats == ("onnx",) and technique.output_format == "tensorrt"


H100_ENGINE = engine_metadata(
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability=(9, 0),
    tensorrt_version="10.3.0",
    cuda_version="12.4",
    precision="fp16",
    profile={"input_ids": ShapeRange(min=[1, 1], opt=[8, 128], max=[32, 512])},
)


def test_engine_metadata_records_where_it_was_built():
    assert H100_ENGINE["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert H100_ENGINE["compute_capability"] == [9, 0]
    assert (H100_ENGINE["tensorrt_version"], H100_ENGINE["cuda_version"]) == ("10.3.0", "12.4")
    assert H100_ENGINE["profile"]["input_ids"] == {"min": [1, 1], "opt": [8, 128], "max": [32, 512]}
    assert describe_target(H100_ENGINE) == (
        "NVIDIA H100 80GB HBM3 (compute capability 9.0), TensorRT 10.3.0, CUDA 12.4"
    )


def test_same_gpu_and_version_may_run_the_engine():
    assert (
        portability_problem(
            H100_ENGINE, gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), tensorrt_version="10.3.0"
        )
        is None
    )


def test_another_architecture_is_refused_with_a_message():
    problem = portability_problem(H100_ENGINE, gpu_name="NVIDIA A100-SXM4-80GB", compute_capability=(8, 0))
    assert problem.startswith("TensorRT engines are not portable across GPU architectures")
    assert "NVIDIA H100 80GB HBM3 (compute capability 9.0)" in problem and "NVIDIA A100-SXM4-80GB" in problem


def test_no_gpu_another_tensorrt_or_another_model_is_refused():
    assert "needs an NVIDIA GPU" in portability_problem(H100_ENGINE, gpu_name=None, compute_capability=None)
    assert "TensorRT 10.3.0 and cannot be loaded by TensorRT 10.8.0" in portability_problem(
        H100_ENGINE, gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), tensorrt_version="10.8.0"
    )
    assert "same architecture but another model" in portability_problem(
        H100_ENGINE, gpu_name="NVIDIA H100 PCIe", compute_capability=(9, 0)
    )
