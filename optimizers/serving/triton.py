"""Triton Inference Server model repository for an ONNX artifact.

Layout (what ``tritonserver --model-repository=<root>`` loads)::

    <name>/config.pbtxt
    <name>/1/model.onnx          (+ its external-data files, if any)

``config.pbtxt`` is written in protobuf text format for Triton's ``ModelConfig``
(``model_config.proto``): the ONNX Runtime backend, inputs and outputs read from
the ONNX graph (names, Triton data types, dims with -1 for dynamic axes), a
``max_batch_size``, ``dynamic_batching`` from a batching recommendation and one
instance group. When every input and output has a dynamic first axis, that axis
is the batch: it is left out of ``dims`` and ``max_batch_size`` is set;
otherwise the model cannot be batched by Triton, ``max_batch_size`` is 0 and the
full shapes are written (Triton refuses ``dynamic_batching`` then, so none is).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from pydantic import BaseModel

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError

_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

#: ONNX ``TensorProto`` element types → Triton ``DataType`` names (model_config.proto).
ONNX_TO_TRITON: dict[int, str] = {
    1: "TYPE_FP32",  # FLOAT
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
    16: "TYPE_BF16",
}


class TensorSpec(BaseModel):
    """One model input or output as Triton sees it (dims include the batch axis here)."""

    name: str
    data_type: str
    dims: list[int]


class TritonSettings(BaseModel):
    """What goes into ``config.pbtxt`` besides the graph's inputs and outputs."""

    max_batch_size: int = 8
    #: None: no ``dynamic_batching`` block (Triton then runs requests as they come).
    max_queue_delay_microseconds: int | None = 0
    preferred_batch_sizes: list[int] = []
    instance_count: int = 1
    #: ``KIND_CPU`` or ``KIND_GPU``.
    instance_kind: str = "KIND_CPU"


def onnx_io(onnx_file: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of an ONNX graph; initializers listed as inputs are left out.

    A dimension with a symbolic name or no value is -1. ``PreflightError`` for an
    element type Triton has no ``DataType`` for, or a non-tensor input/output.
    """
    import onnx

    model = onnx.load(str(onnx_file), load_external_data=False)
    initializers = {tensor.name for tensor in model.graph.initializer}

    def spec(value) -> TensorSpec:
        if not value.type.HasField("tensor_type"):
            raise PreflightError(f"ONNX value '{value.name}' is not a tensor: Triton export supports tensors only")
        tensor = value.type.tensor_type
        if tensor.elem_type not in ONNX_TO_TRITON:
            raise PreflightError(f"ONNX value '{value.name}' has element type {tensor.elem_type}, which Triton lacks")
        dims = [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else -1 for dim in tensor.shape.dim]
        return TensorSpec(name=value.name, data_type=ONNX_TO_TRITON[tensor.elem_type], dims=dims)

    inputs = [spec(value) for value in model.graph.input if value.name not in initializers]
    outputs = [spec(value) for value in model.graph.output]
    return inputs, outputs


def batchable(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> bool:
    """True when every input and output has a dynamic first axis (Triton's implicit batch)."""
    return all(spec.dims and spec.dims[0] == -1 for spec in [*inputs, *outputs])


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped.replace(chr(9), chr(92) + "t")}"'


def _tensor_block(field: str, specs: list[TensorSpec], drop_batch: bool) -> list[str]:
    lines = [f"{field} ["]
    for number, spec in enumerate(specs):
        dims = spec.dims[1:] if drop_batch else spec.dims
        # A scalar (rank 0) is written as [1]: Triton requires at least one dim (reshape documents it).
        dims_text = ", ".join(str(dim) for dim in dims) if dims else "1"
        closing = "}," if number < len(specs) - 1 else "}"
        lines += [
            "  {",
            f"    name: {_quote(spec.name)}",
            f"    data_type: {spec.data_type}",
            f"    dims: [ {dims_text} ]",
        ]
        if not dims:
            lines.append("    reshape: { shape: [ ] }")
        lines.append(f"  {closing}")
    lines.append("]")
    return lines


def config_pbtxt(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], settings: TritonSettings) -> str:
    """The ``config.pbtxt`` text (protobuf text format of Triton's ``ModelConfig``).

    ``settings.max_batch_size`` applies only when the graph is ``batchable``; then
    ``dynamic_batching`` is written unless ``max_queue_delay_microseconds`` is None,
    with preferred sizes above ``max_batch_size`` dropped.
    """
    check_model_name(name)
    if settings.instance_kind not in ("KIND_CPU", "KIND_GPU"):
        raise ValueError("instance_kind must be KIND_CPU or KIND_GPU")
    batch = settings.max_batch_size if batchable(inputs, outputs) and settings.max_batch_size > 0 else 0
    lines = [
        f"name: {_quote(name)}",
        'backend: "onnxruntime"',
        f"max_batch_size: {batch}",
        *_tensor_block("input", inputs, batch > 0),
        *_tensor_block("output", outputs, batch > 0),
    ]
    if batch and settings.max_queue_delay_microseconds is not None:
        preferred = sorted({size for size in settings.preferred_batch_sizes if 1 <= size <= batch})
        lines.append("dynamic_batching {")
        if preferred:
            lines.append(f"  preferred_batch_size: [ {', '.join(str(size) for size in preferred)} ]")
        lines.append(f"  max_queue_delay_microseconds: {max(0, int(settings.max_queue_delay_microseconds))}")
        lines.append("}")
    lines += [
        "instance_group [",
        "  {",
        f"    count: {max(1, settings.instance_count)}",
        f"    kind: {settings.instance_kind}",
        "  }",
        "]",
    ]
    return "\n".join(lines) + "\n"


def check_model_name(name: str) -> None:
    """Triton model names become folder names: letters, digits, ``_.-``, at most 128, not starting with a dot."""
    if not _NAME.match(name):
        raise ValueError(f"invalid Triton model name {name!r}: use letters, digits, '_', '.', '-' (≤ 128)")


def _external_files(onnx_file: Path) -> list[str]:
    """Relative paths of the external-data files ``onnx_file`` names (checked to stay in its folder)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    from optimizers.onnx_safety import check_onnx_external_data

    check_onnx_external_data(onnx_file)
    model = onnx.load(str(onnx_file), load_external_data=False)
    names = set()
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            names.update(entry.value for entry in tensor.external_data if entry.key == "location")
    return sorted(names)


def export_repository(artifact: ModelArtifact, repository: Path, *, model_name: str, settings: TritonSettings) -> Path:
    """Write ``repository/<model_name>/config.pbtxt`` and ``…/1/model.onnx``; return the model folder.

    ``PreflightError`` unless ``artifact`` is ONNX. External-data files go beside
    ``model.onnx`` under the names the graph uses (their paths are checked first).
    """
    if artifact.format != "onnx":
        raise PreflightError(f"Triton export needs an ONNX artifact (run onnx_export first), not {artifact.format}")
    check_model_name(model_name)
    inputs, outputs = onnx_io(artifact.onnx_file)
    folder = Path(repository) / model_name
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "1").mkdir(parents=True)
    shutil.copyfile(artifact.onnx_file, folder / "1" / "model.onnx")
    for relative in _external_files(artifact.onnx_file):
        target = folder / "1" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact.onnx_file.parent / relative, target)
    (folder / "config.pbtxt").write_text(config_pbtxt(model_name, inputs, outputs, settings))
    return folder


def zip_repository(repository: Path, destination: Path) -> Path:
    """Zip ``repository``'s contents (sorted, fixed timestamps: same files → same bytes), temp name then rename."""
    repository, destination = Path(repository), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(repository.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo(path.relative_to(repository).as_posix(), date_time=_FIXED_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, path.read_bytes())
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return destination


def settings_from_recommendation(recommendation, *, instance_kind: str = "KIND_CPU", instance_count: int = 1):
    """``TritonSettings`` from a ``batching.BatchingRecommendation`` (None: batch 8, no queue delay)."""
    if recommendation is None:
        return TritonSettings(instance_kind=instance_kind, instance_count=instance_count)
    return TritonSettings(
        max_batch_size=recommendation.max_batch_size,
        max_queue_delay_microseconds=round(recommendation.max_queue_delay_ms * 1000),
        preferred_batch_sizes=recommendation.preferred_batch_sizes,
        instance_kind=instance_kind,
        instance_count=instance_count,
    )
