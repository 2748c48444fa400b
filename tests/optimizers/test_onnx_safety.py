"""optimizers.onnx_safety: external-data paths are checked everywhere in the graph, before ONNX Runtime opens it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizers.artifacts import ModelArtifact
from optimizers.errors import UnsafeInputError
from optimizers.onnx_safety import check_location, check_onnx_external_data, external_data_entries
from optimizers.runtimes import load_runtime


def external(name: str, location: str, *, offset: str = "0", length: str = "16") -> TensorProto:
    tensor = numpy_helper.from_array(np.arange(4, dtype=np.float32), name=name)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def output(name: str = "y"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [4])


def save(folder: Path, graph, functions=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(graph, functions=list(functions), opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def initializer_model(folder: Path, location: str, **fields: str) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])], "g", [], [output()], [external("w", location, **fields)]
    )
    return save(folder, graph)


HOSTILE_LOCATIONS = [
    "../secret.bin",
    "sub/../../secret.bin",  # CVE-2024-27318: passed the first fix's check
    "/etc/passwd",
    "C:/Windows/win.ini",
    "..\\..\\secret.bin",
    "\uff0e\uff0e/secret.bin",  # NFKC → "../secret.bin"
    "//server/share/x.bin",
]


@pytest.mark.parametrize("location", HOSTILE_LOCATIONS)
def test_initializer_locations_outside_the_folder_are_refused(tmp_path, location):
    with pytest.raises(UnsafeInputError, match="outside the model folder"):
        check_onnx_external_data(initializer_model(tmp_path / "m", location))


def test_subgraph_external_data_is_checked(tmp_path):
    """An If node's branch holds the hostile initializer: the top-level graph looks clean."""
    then_branch = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["t"])], "then", [], [output("t")], [external("w", "../../etc/passwd")]
    )
    else_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(np.zeros(4, np.float32)))],
        "else",
        [],
        [output("e")],
    )
    cond = numpy_helper.from_array(np.array(True), name="cond")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)
    path = save(tmp_path / "m", helper.make_graph([node], "g", [], [output()], [cond]))
    with pytest.raises(UnsafeInputError, match=r"'w' \(graph/If.then_branch\)"):
        check_onnx_external_data(path)


def test_loop_body_in_a_nested_subgraph_is_checked(tmp_path):
    inner = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["t"])], "inner", [], [output("t")], [external("w", "a/../../x")]
    )
    middle = helper.make_graph(
        [helper.make_node("If", ["c"], ["m"], then_branch=inner, else_branch=inner)], "middle", [], [output("m")]
    )
    top = helper.make_node("If", ["c"], ["y"], then_branch=middle, else_branch=middle)
    path = save(tmp_path / "m", helper.make_graph([top], "g", [], [output()]))
    entries = external_data_entries(__import__("onnx").load(str(path), load_external_data=False))
    assert len(entries) == 4  # the inner initializer, reached through both branches of both Ifs
    with pytest.raises(UnsafeInputError, match="outside the model folder"):
        check_onnx_external_data(path)


def test_constant_attribute_and_function_tensors_are_checked(tmp_path):
    constant = helper.make_node("Constant", [], ["y"], value=external("c", "/etc/shadow"))
    with pytest.raises(UnsafeInputError, match="'c'"):
        check_onnx_external_data(save(tmp_path / "a", helper.make_graph([constant], "g", [], [output()])))

    function = helper.make_function(
        "local", "F", [], ["out"], [helper.make_node("Constant", [], ["out"], value=external("f", "../f.bin"))],
        [helper.make_opsetid("", 17)],
    )  # fmt: skip
    graph = helper.make_graph([helper.make_node("F", [], ["y"], domain="local")], "g", [], [output()])
    path = save(tmp_path / "b", graph, functions=[function])
    with pytest.raises(UnsafeInputError, match="function F"):
        check_onnx_external_data(path)


def test_sparse_initializer_values_are_checked(tmp_path):
    values = external("s", "../values.bin")
    indices = numpy_helper.from_array(np.array([0, 1, 2, 3], dtype=np.int64), name="s_idx")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    graph = helper.make_graph([helper.make_node("Identity", ["s"], ["y"])], "g", [], [output()])
    graph.sparse_initializer.append(sparse)
    with pytest.raises(UnsafeInputError, match="outside the model folder"):
        check_onnx_external_data(save(tmp_path / "m", graph))


def test_location_through_a_symlinked_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    path = initializer_model(tmp_path / "m", "link/w.bin")
    (tmp_path / "m" / "link").symlink_to(outside)
    with pytest.raises(UnsafeInputError, match="through a symlink"):
        check_onnx_external_data(path)


def test_location_that_is_a_symlinked_file_is_refused(tmp_path):
    (tmp_path / "secret").write_bytes(b"\0" * 16)
    path = initializer_model(tmp_path / "m", "w.bin")
    (tmp_path / "m" / "w.bin").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafeInputError, match="through a symlink"):
        check_onnx_external_data(path)


@pytest.mark.parametrize(("fields", "match"), [({"offset": "-1"}, "whole number"), ({"length": "999"}, "lies outside")])
def test_offsets_outside_the_data_file_are_refused(tmp_path, fields, match):
    path = initializer_model(tmp_path / "m", "w.bin", **fields)
    (tmp_path / "m" / "w.bin").write_bytes(b"\0" * 16)
    with pytest.raises(UnsafeInputError, match=match):
        check_onnx_external_data(path)


def test_a_folder_as_location_is_refused(tmp_path):
    path = initializer_model(tmp_path / "m", "weights")
    (tmp_path / "m" / "weights").mkdir()
    with pytest.raises(UnsafeInputError, match="not a regular file"):
        check_onnx_external_data(path)


def test_local_external_data_is_accepted_and_listed(tmp_path):
    path = initializer_model(tmp_path / "m", "data/w.bin")
    (tmp_path / "m" / "data").mkdir()
    (tmp_path / "m" / "data" / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    assert check_onnx_external_data(path) == ["data/w.bin"]


def test_not_an_onnx_file_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"<svg onload=alert(1)>")
    with pytest.raises(UnsafeInputError, match="not a readable ONNX model"):
        check_onnx_external_data(path)


@pytest.mark.parametrize("location", ["", "a\0b"])
def test_empty_or_nul_locations_are_refused(tmp_path, location):
    with pytest.raises(UnsafeInputError, match="empty or contains a NUL"):
        check_location(location, tmp_path)


def test_load_runtime_refuses_before_onnx_runtime_opens_the_model(tmp_path):
    """Our check runs first: UnsafeInputError with our reason, not ONNX Runtime's own error.

    Recent ONNX Runtime versions refuse escaping paths as well (older ones did not:
    the CVEs); the check must not depend on which version a worker has installed.
    """
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    path = initializer_model(tmp_path / "m", "link/w.bin")
    (tmp_path / "m" / "link").symlink_to(outside)
    artifact = ModelArtifact(name="m", path=str(tmp_path / "m"), format="onnx", task="feature-extraction",
                             sha256="", size_bytes=0)  # fmt: skip
    with pytest.raises(UnsafeInputError, match="through a symlink"):
        load_runtime(artifact)
    assert path.is_file()


def test_load_runtime_opens_a_model_with_local_external_data(tmp_path):
    initializer_model(tmp_path / "m", "w.bin")
    (tmp_path / "m" / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    artifact = ModelArtifact(name="m", path=str(tmp_path / "m"), format="onnx", task="feature-extraction",
                             sha256="", size_bytes=0)  # fmt: skip
    runtime = load_runtime(artifact)
    assert runtime.session.run(None, {})[0].tolist() == [0.0, 1.0, 2.0, 3.0]
