"""Read a GGUF file's header: metadata keys and every tensor's name, shape and type.

A small reader of the published GGUF layout (versions 2 and 3, little-endian),
so that passes can record what llama.cpp actually wrote (per-tensor types,
fall-backs) without importing the converter's ``gguf-py`` (which lives outside
the venv) or loading the weights. Tests check it against ``gguf-py``'s
``GGUFReader``.

Public: ``read_gguf(path) -> GGUFInfo``, ``GGML_TYPES``, ``FILE_TYPES``,
``fallback_tensors(info, requested)``.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from optimizers.errors import PassError

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
}

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


class _Reader:
    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = self.handle.read(size)
        if len(data) != size:
            raise PassError("the GGUF file ends inside its header (truncated or not a GGUF file)")
        return struct.unpack(fmt, data)[0]

    def string(self) -> str:
        length = self.unpack("<Q")
        if length > 1 << 24:
            raise PassError(f"implausible string length {length} in the GGUF header")
        return self.handle.read(length).decode("utf-8", errors="replace")

    def value(self, kind: int, *, keep: bool = True) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.unpack("<I"), self.unpack("<Q")
            if item_kind in _SCALARS and item_kind != _STRING:
                size = struct.calcsize(_SCALARS[item_kind])
                data = self.handle.read(size * count)
                if not keep or count > 64:
                    return f"<array of {count}>"
                return list(struct.unpack(f"<{count}{_SCALARS[item_kind][1]}", data))
            items = [self.value(item_kind, keep=False) for _ in range(count)]
            return items if keep and count <= 64 else f"<array of {count}>"
        raise PassError(f"unknown GGUF metadata value type {kind}")


def read_gguf(path: Path) -> GGUFInfo:
    """Parse the header of the GGUF file at ``path`` (weights are not read).

    Large arrays (the vocabulary) are summarised as ``"<array of N>"``.
    Raises ``PassError`` for a file that is not GGUF or is truncated.
    """
    with open(path, "rb") as handle:
        reader = _Reader(handle)
        if handle.read(4) != b"GGUF":
            raise PassError(f"{Path(path).name} is not a GGUF file (bad magic)")
        version = reader.unpack("<I")
        if version not in (2, 3):
            raise PassError(f"{Path(path).name}: GGUF version {version} is not supported (2 or 3)")
        tensor_count, kv_count = reader.unpack("<Q"), reader.unpack("<Q")
        info = GGUFInfo(version=version)
        for _ in range(kv_count):
            key = reader.string()
            info.metadata[key] = reader.value(reader.unpack("<I"))
        for _ in range(tensor_count):
            name = reader.string()
            dims = tuple(reader.unpack("<Q") for _ in range(reader.unpack("<I")))
            kind = reader.unpack("<I")
            reader.unpack("<Q")  # data offset
            info.tensors.append(TensorInfo(name=name, shape=dims, type=GGML_TYPES.get(kind, f"type{kind}")))
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


__all__ = ["FILE_TYPES", "GGML_TYPES", "GGUFInfo", "TensorInfo", "fallback_tensors", "read_gguf", "uses_256_blocks"]
