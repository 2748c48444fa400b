"""Check an ONNX model's external-data references before anything loads its weights.

ONNX keeps large tensors in side files named by each tensor's ``external_data``
entry ``location``. ONNX and ONNX Runtime open those paths relative to the model,
and both have had path-traversal bugs there (CVE-2022-25882: ``../``;
CVE-2024-27318: ``subdir/../../`` slipping past the fix), so a hostile model could
make a worker read any file it can reach. ``check_onnx_external_data`` therefore
validates every location itself — initializers, sparse initializers, tensor
attributes of every node, in every subgraph (``If``/``Loop``/``Scan`` bodies) and
in every local function — and is called before ``onnx``'s weight loading or an
``onnxruntime.InferenceSession`` ever sees an uploaded or resolved model.

Public: ``check_onnx_external_data(onnx_file) -> list[str]``,
``external_data_entries(model)``, ``check_location(location, base_dir)``.
No Django, no ONNX Runtime; only the ``onnx`` protobuf classes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from optimizers.errors import UnsafeInputError

_DRIVE_OR_UNC = re.compile(r"^([A-Za-z]:|//|\\\\)")


@dataclass(frozen=True)
class ExternalDataEntry:
    """One tensor's external-data record: where it lives (``graph`` path) and its key/value pairs."""

    tensor: str
    where: str
    fields: dict[str, str]


def _tensors_of_attribute(attribute: Any) -> Iterator[Any]:
    if attribute.HasField("t"):
        yield attribute.t
    yield from attribute.tensors
    for sparse in ([attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []) + list(
        attribute.sparse_tensors
    ):
        yield sparse.values
        yield sparse.indices


def _graph_tensors(graph: Any, where: str) -> Iterator[tuple[Any, str]]:
    for tensor in graph.initializer:
        yield tensor, where
    for sparse in graph.sparse_initializer:
        yield sparse.values, where
        yield sparse.indices, where
    yield from _node_tensors(graph.node, where)


def _node_tensors(nodes: Any, where: str) -> Iterator[tuple[Any, str]]:
    for node in nodes:
        for attribute in node.attribute:
            for tensor in _tensors_of_attribute(attribute):
                yield tensor, where
            label = f"{where}/{node.name or node.op_type}.{attribute.name}"
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g, label)
            for index, subgraph in enumerate(attribute.graphs):
                yield from _graph_tensors(subgraph, f"{label}[{index}]")


def external_data_entries(model: Any) -> list[ExternalDataEntry]:
    """Every tensor of ``model`` (an ``onnx.ModelProto``) that has ``external_data``, subgraphs included."""
    found = []
    tensors = list(_graph_tensors(model.graph, "graph"))
    for function in model.functions:
        tensors += list(_node_tensors(function.node, f"function {function.name}"))
    for tensor, where in tensors:
        if len(tensor.external_data):
            fields = {entry.key: entry.value for entry in tensor.external_data}
            found.append(ExternalDataEntry(tensor=tensor.name, where=where, fields=fields))
    return found


def check_location(location: str, base_dir: Path) -> Path:
    """The file ``location`` names inside ``base_dir``; ``UnsafeInputError`` if it could point elsewhere.

    Refused: empty names, NUL bytes, backslashes, absolute or drive/UNC paths, any
    ``..`` component (also after Unicode NFKC normalisation), and paths that
    leave ``base_dir`` once symlinks are resolved. The file need not exist.
    """
    shown = repr(location)
    if not location or "\0" in location:
        raise UnsafeInputError(f"external data location {shown} is empty or contains a NUL byte")
    normalized = unicodedata.normalize("NFKC", location)
    if "\\" in normalized:
        raise UnsafeInputError(
            f"external data location {shown} contains a backslash (Windows path); refused as outside the model folder"
        )
    if normalized.startswith("/") or _DRIVE_OR_UNC.match(normalized):
        raise UnsafeInputError(f"external data location {shown} points outside the model folder (absolute path)")
    if ".." in PurePosixPath(normalized).parts or ".." in PurePosixPath(location).parts:
        raise UnsafeInputError(f"external data location {shown} points outside the model folder ('..')")
    base = Path(base_dir).resolve()
    target = (base / location).resolve()
    if not target.is_relative_to(base) or target == base:
        raise UnsafeInputError(f"external data location {shown} points outside the model folder (through a symlink)")
    return target


def _int_field(entry: ExternalDataEntry, key: str) -> int | None:
    if key not in entry.fields:
        return None
    value = entry.fields[key]
    if not value.isascii() or not value.isdigit():
        raise UnsafeInputError(f"ONNX tensor {entry.tensor!r}: external data {key} {value!r} is not a whole number")
    return int(value)


def check_onnx_external_data(onnx_file: Path) -> list[str]:
    """Refuse the ONNX model at ``onnx_file`` unless all its external data lies inside its folder.

    Reads only the protobuf (``load_external_data=False``), never the weights.
    Each ``location`` must pass ``check_location`` against the model's folder; an
    existing target must be a regular file, and ``offset``/``length`` must be
    whole numbers inside it. Returns the distinct locations (relative, sorted).
    Raises ``UnsafeInputError`` (also for a file that is not a valid ONNX model).
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(onnx_file)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as error:
        raise UnsafeInputError(f"{path.name} is not a readable ONNX model: {error}") from None
    base = path.parent
    locations: set[str] = set()
    for entry in external_data_entries(model):
        location = entry.fields.get("location")
        if location is None:
            raise UnsafeInputError(f"ONNX tensor {entry.tensor!r} ({entry.where}) has external data without a location")
        try:
            target = check_location(location, base)
        except UnsafeInputError as error:
            raise UnsafeInputError(f"ONNX tensor {entry.tensor!r} ({entry.where}): {error}; refused") from None
        offset, length = _int_field(entry, "offset"), _int_field(entry, "length")
        if target.exists():
            if not target.is_file():
                raise UnsafeInputError(
                    f"ONNX tensor {entry.tensor!r}: external data {location!r} is not a regular file"
                )
            size = target.stat().st_size
            if (offset or 0) > size or (offset or 0) + (length or 0) > size:
                raise UnsafeInputError(
                    f"ONNX tensor {entry.tensor!r}: external data range (offset {offset}, length {length}) "
                    f"lies outside {location!r} ({size} bytes)"
                )
        locations.add(location)
    return sorted(locations)


__all__ = ["ExternalDataEntry", "check_location", "check_onnx_external_data", "external_data_entries"]
