"""Read a GGUF file's header: metadata keys and every tensor's name, shape and type.

A small reader of the published GGUF layout (versions 2 and 3, little-endian),
so that passes can record what llama.cpp actually wrote (per-tensor types,
fall-backs) without importing the converter's ``gguf-py`` (which lives outside
the venv) or loading the weights. Tests check it against ``gguf-py``'s
``GGUFReader``.

Public: ``read_gguf(path) -> GGUFInfo``, ``GGML_TYPES``, ``GGML_TYPE_SIZES``,
``FILE_TYPES``, ``fallback_tensors(info, requested)``.

The reader is also the gate in front of llama.cpp: a GGUF file is attacker-
controlled input (llama.cpp's own parser has had overflow bugs on huge counts and
dimensions), so ``read_gguf`` bounds every count and length by the bytes left in
the file, refuses nested arrays, duplicate keys or tensor names, more than four
dimensions, element counts that overflow int64, unknown tensor types, rows that
do not fill whole blocks, a ``general.alignment`` that is not a power-of-two
uint32, and tensor data that is misaligned, overlapping or past the end of the
file — the same rules llama.cpp's ``gguf_init_from_file`` applies, checked in
Python first. Call it before handing a file to llama.cpp.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from optimizers.errors import UnsafeInputError

#: ggml tensor type id → name (ggml.h / gguf-py ``GGMLQuantizationType``).
GGML_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    30: "BF16",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
    40: "NVFP4",
    41: "Q1_0",
    42: "Q2_0",
}

#: ggml tensor type id → (elements per block, bytes per block) (gguf-py ``GGML_QUANT_SIZES``).
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 36),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
    42: (64, 18),
}

#: ggml's GGML_MAX_DIMS and GGML_MAX_NAME (a tensor name is at most 63 bytes).
MAX_DIMS = 4
MAX_TENSOR_NAME_BYTES = 63
DEFAULT_ALIGNMENT = 32
_INT64_MAX = (1 << 63) - 1
# Smallest encodings: a key-value is key length (8) + value type (4) + a 1-byte value;
# a tensor info is name length (8) + dim count (4) + one dim (8) + type (4) + offset (8).
_MIN_KV_BYTES = 13
_MIN_TENSOR_INFO_BYTES = 32
_ALIGNMENT_KEY = "general.alignment"

#: ``general.file_type`` id → llama.cpp's name (``LLAMA_FTYPE_*`` / gguf-py ``LlamaFileType``).
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
}

#: Types llama.cpp substitutes when a row length does not fit a 256-wide block
#: (``llama_tensor_get_type``: Q2_K/Q3_K/IQ* → IQ4_NL or Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0).
_BLOCK_256_FALLBACKS = frozenset({"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "F16"})

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    type: str

    @property
    def is_matrix(self) -> bool:
        return len([dim for dim in self.shape if dim > 1]) >= 2


@dataclass
class GGUFInfo:
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    @property
    def file_type(self) -> str | None:
        """llama.cpp's name of ``general.file_type`` (``Q4_K_M``, ``F16``, ...), if recorded."""
        value = self.metadata.get("general.file_type")
        return FILE_TYPES.get(value, f"unknown({value})") if value is not None else None

    def type_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(tensor.type for tensor in self.tensors).items()))

    def tensor_types(self) -> dict[str, str]:
        return {tensor.name: tensor.type for tensor in self.tensors}


def _refuse(message: str) -> UnsafeInputError:
    return UnsafeInputError(f"GGUF header refused: {message}")


class _Reader:
    """Reads little-endian values, never past the end of the file nor more than the file could hold."""

    def __init__(self, handle: BinaryIO, file_size: int) -> None:
        self.handle = handle
        self.file_size = file_size

    def remaining(self) -> int:
        return self.file_size - self.handle.tell()

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = self.handle.read(size)
        if len(data) != size:
            raise _refuse("the file ends inside its header (truncated or not a GGUF file)")
        return struct.unpack(fmt, data)[0]

    def raw_string(self, what: str) -> bytes:
        length = self.unpack("<Q")
        if length > min(self.remaining(), 1 << 24):
            raise _refuse(f"{what} length {length} is larger than the file allows")
        return self.handle.read(length)

    def string(self, what: str = "string") -> str:
        return self.raw_string(what).decode("utf-8", errors="replace")

    def skip(self, count: int) -> None:
        if count > self.remaining():
            raise _refuse("an array runs past the end of the file")
        self.handle.seek(count, 1)

    def value(self, kind: int, key: str, *, keep: bool = True) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string(f"value of {key!r}")
        if kind == _ARRAY:
            item_kind, count = self.unpack("<I"), self.unpack("<Q")
            if item_kind == _ARRAY:
                raise _refuse(f"{key!r} is an array of arrays (not supported by llama.cpp)")
            if item_kind in _SCALARS:
                size = struct.calcsize(_SCALARS[item_kind])
                if count > self.remaining() // size:
                    raise _refuse(f"{key!r} declares {count} items, more than the file holds")
                if not keep or count > 64:
                    self.skip(size * count)
                    return f"<array of {count}>"
                data = self.handle.read(size * count)
                return list(struct.unpack(f"<{count}{_SCALARS[item_kind][1]}", data))
            if item_kind != _STRING:
                raise _refuse(f"unknown array item type {item_kind} in {key!r}")
            if count > self.remaining() // 8:
                raise _refuse(f"{key!r} declares {count} strings, more than the file holds")
            items = [self.value(item_kind, key, keep=False) for _ in range(count)]
            return items if keep and count <= 64 else f"<array of {count}>"
        raise _refuse(f"unknown metadata value type {kind} for {key!r}")


def _pad(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _alignment(metadata: dict[str, Any], kinds: dict[str, int]) -> int:
    if _ALIGNMENT_KEY not in metadata:
        return DEFAULT_ALIGNMENT
    value = metadata[_ALIGNMENT_KEY]
    if kinds[_ALIGNMENT_KEY] != 4 or value == 0 or value & (value - 1):
        raise _refuse(f"{_ALIGNMENT_KEY} must be a power-of-two uint32, got {value!r}")
    return value


def _tensor_info(reader: _Reader, seen: set[str]) -> tuple[TensorInfo, int, int]:
    """(info, data offset, data bytes) of the next tensor, checked."""
    raw_name = reader.raw_string("tensor name")
    if len(raw_name) > MAX_TENSOR_NAME_BYTES:
        raise _refuse(f"tensor name of {len(raw_name)} bytes (llama.cpp allows {MAX_TENSOR_NAME_BYTES})")
    name = raw_name.decode("utf-8", errors="replace")
    if name in seen:
        raise _refuse(f"tensor {name!r} appears twice")
    seen.add(name)
    n_dims = reader.unpack("<I")
    if not 1 <= n_dims <= MAX_DIMS:
        raise _refuse(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
    dims = tuple(reader.unpack("<Q") for _ in range(n_dims))
    elements = 1
    for dim in dims:
        elements *= dim
        if dim > _INT64_MAX or elements > _INT64_MAX:
            raise _refuse(f"tensor {name!r} dimensions {dims} overflow a 64-bit element count")
    kind = reader.unpack("<I")
    if kind not in GGML_TYPE_SIZES:
        raise _refuse(f"tensor {name!r} has unknown type id {kind}")
    block, block_bytes = GGML_TYPE_SIZES[kind]
    if dims[0] % block:
        raise _refuse(f"tensor {name!r} rows of {dims[0]} do not fill {GGML_TYPES[kind]} blocks of {block}")
    offset = reader.unpack("<Q")
    info = TensorInfo(name=name, shape=dims, type=GGML_TYPES[kind])
    return info, offset, elements // block * block_bytes


def read_gguf(path: Path) -> GGUFInfo:
    """Parse and validate the header of the GGUF file at ``path`` (weights are not read).

    Large arrays (the vocabulary) are summarised as ``"<array of N>"``.
    Raises ``UnsafeInputError`` for a file that is not GGUF, is truncated, or
    breaks a rule of the format (module docstring) — before llama.cpp sees it.
    """
    label = Path(path).name
    file_size = Path(path).stat().st_size
    with open(path, "rb") as handle:
        reader = _Reader(handle, file_size)
        if handle.read(4) != b"GGUF":
            raise UnsafeInputError(f"{label} is not a GGUF file (bad magic)")
        version = reader.unpack("<I")
        if version not in (2, 3):
            raise UnsafeInputError(f"{label}: GGUF version {version} is not supported (2 or 3)")
        tensor_count, kv_count = reader.unpack("<Q"), reader.unpack("<Q")
        if kv_count > reader.remaining() // _MIN_KV_BYTES:
            raise _refuse(f"{label} declares {kv_count} key-value pairs, more than its {file_size} bytes can hold")
        if tensor_count > reader.remaining() // _MIN_TENSOR_INFO_BYTES:
            raise _refuse(f"{label} declares {tensor_count} tensors, more than its {file_size} bytes can hold")
        info = GGUFInfo(version=version)
        kinds: dict[str, int] = {}
        for _ in range(kv_count):
            key = reader.string("key")
            if key in kinds:
                raise _refuse(f"key {key!r} appears twice")
            kinds[key] = reader.unpack("<I")
            info.metadata[key] = reader.value(kinds[key], key)
        alignment = _alignment(info.metadata, kinds)
        seen: set[str] = set()
        layout = []
        for _ in range(tensor_count):
            tensor, offset, nbytes = _tensor_info(reader, seen)
            info.tensors.append(tensor)
            layout.append((tensor.name, offset, nbytes))
        data_start = _pad(handle.tell(), alignment)
    expected = 0
    for name, offset, nbytes in layout:
        # llama.cpp requires each tensor right after the previous one, padded to the alignment.
        if offset != expected:
            raise _refuse(
                f"tensor {name!r} data offset {offset} is not the expected {expected} "
                f"(misaligned to {alignment} or overlapping another tensor)"
            )
        if data_start + offset + nbytes > file_size:
            raise _refuse(f"tensor {name!r} data ({nbytes} bytes at {offset}) runs past the end of the file")
        expected = offset + _pad(nbytes, alignment)
    return info


def uses_256_blocks(file_type: str) -> bool:
    """K-quants and i-quants pack rows in blocks of 256 values."""
    return "_K" in file_type or file_type.startswith("IQ")


def fallback_tensors(info: GGUFInfo, requested: str) -> dict[str, str]:
    """Matrices that llama.cpp stored in a fall-back type instead of the family ``requested`` asks for.

    For block-256 types (K-quants, i-quants) a matrix whose rows do not divide
    into 256 is written as Q5_0 / Q5_1 / Q8_0 / IQ4_NL / Q4_0 instead; those are
    returned as ``{tensor name: type}``. Other requests (Q8_0, Q4_0, F16) use
    32-wide blocks and do not fall back on models whose rows are multiples of 32.
    """
    if not uses_256_blocks(requested):
        return {}
    return {
        tensor.name: tensor.type
        for tensor in info.tensors
        if tensor.is_matrix and tensor.type in _BLOCK_256_FALLBACKS and tensor.shape[0] % 256 != 0
    }


__all__ = [
    "FILE_TYPES",
    "GGML_TYPES",
    "GGML_TYPE_SIZES",
    "GGUFInfo",
    "TensorInfo",
    "fallback_tensors",
    "read_gguf",
    "uses_256_blocks",
]
