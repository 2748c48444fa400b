"""optimizers.gguf_info.read_gguf validates a GGUF header before llama.cpp parses it.

Files are written byte by byte here (the published GGUF v3 layout), so each test
breaks exactly one rule; a well-formed file of the same shape is accepted.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError, UnsafeInputError
from optimizers.gguf_info import read_gguf

U8, U32, STRING, ARRAY = 0, 4, 8, 9
F32, Q8_0 = 0, 8


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, kind: int, payload: bytes) -> bytes:
    return gguf_string(key) + struct.pack("<I", kind) + payload


def tensor_info(name: str, dims: tuple[int, ...], kind: int, offset: int) -> bytes:
    return gguf_string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, kind, offset)


def gguf_file(
    kvs: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    *,
    data: bytes = b"",
    kv_count: int | None = None,
    tensor_count: int | None = None,
    alignment: int = 32,
) -> bytes:
    """A GGUF v3 file; by default one F32 tensor "w" of 8 values and one metadata key."""
    kvs = [kv("general.architecture", STRING, gguf_string("llama"))] if kvs is None else kvs
    if tensors is None:
        tensors, data = [tensor_info("w", (8,), F32, 0)], b"\0" * 32
    header = b"GGUF" + struct.pack(
        "<IQQ", 3, len(tensors) if tensor_count is None else tensor_count, len(kvs) if kv_count is None else kv_count
    )
    header += b"".join(kvs) + b"".join(tensors)
    padding = b"\0" * (-len(header) % alignment)
    return header + padding + data


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    return path


def refused(tmp_path: Path, content: bytes, match: str) -> None:
    with pytest.raises(UnsafeInputError, match=match):
        read_gguf(write(tmp_path, content))


def test_a_well_formed_file_is_read(tmp_path):
    two = [tensor_info("a", (8,), F32, 0), tensor_info("b", (32, 2), Q8_0, 32)]
    kvs = [
        kv("general.architecture", STRING, gguf_string("llama")),
        kv("general.alignment", U32, struct.pack("<I", 32)),
    ]
    info = read_gguf(write(tmp_path, gguf_file(kvs, two, data=b"\0" * (32 + 68))))
    assert info.architecture == "llama"
    assert [(t.name, t.shape, t.type) for t in info.tensors] == [("a", (8,), "F32"), ("b", (32, 2), "Q8_0")]


def test_huge_key_value_count_is_refused_before_reading_keys(tmp_path):
    refused(tmp_path, gguf_file(kv_count=2**63), r"declares 9223372036854775808 key-value pairs")


def test_huge_tensor_count_is_refused(tmp_path):
    refused(tmp_path, gguf_file(tensor_count=2**40), "declares 1099511627776 tensors")


def test_string_longer_than_the_file_is_refused(tmp_path):
    refused(tmp_path, gguf_file([struct.pack("<Q", 2**60) + b"key"]), "key length .* larger than the file")


def test_array_with_a_huge_count_is_refused(tmp_path):
    hostile = kv("tokenizer.ggml.scores", ARRAY, struct.pack("<IQ", U32, 2**61))
    refused(tmp_path, gguf_file([hostile]), "declares 2305843009213693952 items")


def test_string_array_with_a_huge_count_is_refused(tmp_path):
    hostile = kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<IQ", STRING, 2**50))
    refused(tmp_path, gguf_file([hostile]), "strings, more than the file holds")


def test_nested_arrays_are_refused(tmp_path):
    refused(tmp_path, gguf_file([kv("x", ARRAY, struct.pack("<IQ", ARRAY, 1))]), "array of arrays")


def test_duplicate_keys_are_refused(tmp_path):
    pair = kv("general.name", STRING, gguf_string("a"))
    refused(tmp_path, gguf_file([pair, pair]), "'general.name' appears twice")


def test_unknown_value_type_is_refused(tmp_path):
    refused(tmp_path, gguf_file([kv("x", 99, b"\0" * 8)]), "unknown metadata value type 99")


def test_overflowing_dimensions_are_refused(tmp_path):
    hostile = tensor_info("w", (2**40, 2**40), F32, 0)
    refused(tmp_path, gguf_file(tensors=[hostile], data=b"\0" * 32), "overflow a 64-bit element count")


def test_more_than_four_dimensions_are_refused(tmp_path):
    refused(tmp_path, gguf_file(tensors=[tensor_info("w", (1, 1, 1, 1, 8), F32, 0)]), "5 dimensions")


def test_tensor_larger_than_the_file_is_refused(tmp_path):
    refused(tmp_path, gguf_file(tensors=[tensor_info("w", (1024, 1024), F32, 0)], data=b"\0" * 32), "past the end")


def test_unknown_tensor_type_is_refused(tmp_path):
    refused(tmp_path, gguf_file(tensors=[tensor_info("w", (8,), 77, 0)], data=b"\0" * 32), "unknown type id 77")


def test_rows_that_do_not_fill_blocks_are_refused(tmp_path):
    refused(tmp_path, gguf_file(tensors=[tensor_info("w", (33,), Q8_0, 0)], data=b"\0" * 64), "do not fill Q8_0 blocks")


@pytest.mark.parametrize(
    ("kind", "payload", "shown"),
    [(U32, struct.pack("<I", 0), "0"), (U32, struct.pack("<I", 48), "48"), (U8, struct.pack("<B", 32), "32")],
)
def test_bad_alignment_is_refused(tmp_path, kind, payload, shown):
    refused(tmp_path, gguf_file([kv("general.alignment", kind, payload)]), f"power-of-two uint32, got {shown}")


def test_misaligned_tensor_offset_is_refused(tmp_path):
    two = [tensor_info("a", (8,), F32, 0), tensor_info("b", (8,), F32, 40)]
    refused(tmp_path, gguf_file(tensors=two, data=b"\0" * 96), "'b' data offset 40 is not the expected 32")


def test_overlapping_tensors_are_refused(tmp_path):
    two = [tensor_info("a", (8,), F32, 0), tensor_info("b", (8,), F32, 0)]
    refused(tmp_path, gguf_file(tensors=two, data=b"\0" * 64), "overlapping")


def test_duplicate_tensor_names_are_refused(tmp_path):
    two = [tensor_info("a", (8,), F32, 0), tensor_info("a", (8,), F32, 32)]
    refused(tmp_path, gguf_file(tensors=two, data=b"\0" * 64), "'a' appears twice")


def test_overlong_tensor_name_is_refused(tmp_path):
    refused(tmp_path, gguf_file(tensors=[tensor_info("t" * 64, (8,), F32, 0)], data=b"\0" * 32), "64 bytes")


@pytest.mark.parametrize(("content", "match"), [(b"GGML" + b"\0" * 20, "bad magic"), (b"GGUF\x03\0", "truncated")])
def test_not_gguf_or_truncated_is_refused(tmp_path, content, match):
    refused(tmp_path, content, match)


def test_llama_cpp_runtime_checks_the_header_before_llama_cpp(tmp_path):
    pytest.importorskip("llama_cpp")
    from optimizers.runtimes.llama_cpp import LlamaCppRuntime

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(gguf_file(kv_count=2**62))
    artifact = ModelArtifact(name="m", path=str(folder), format="gguf", task="causal-lm", sha256="", size_bytes=0)
    with pytest.raises(UnsafeInputError, match="key-value pairs"):
        LlamaCppRuntime(artifact)
    (folder / "model.gguf").unlink()
    with pytest.raises(PreflightError, match="has no model.gguf"):
        LlamaCppRuntime(artifact)
