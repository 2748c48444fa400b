"""optimizers.uploads: hostile model archives and datasets are refused, good ones extracted."""

from __future__ import annotations

import json
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from optimizers.errors import UnsafeInputError
from optimizers.uploads import (
    extract_model_zip,
    task_from_config,
    validate_jsonl_dataset,
    validate_safetensors,
)

LIMIT = 50 * 1024**2
CONFIG = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 4}


def safetensors_bytes(header: dict | None = None, data: bytes | None = None) -> bytes:
    """A safetensors file: one F32 tensor of shape [2, 2] unless told otherwise."""
    if header is None:
        header = {"weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
        data = struct.pack("<4f", 1, 2, 3, 4)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + (data or b"")


def tensor_file(shape: list[int], offsets: list[int], data_bytes: int) -> bytes:
    return safetensors_bytes({"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}, b"\0" * data_bytes)


def make_zip(path: Path, entries: dict[str, bytes], *, modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (modes or {}).get(name, stat.S_IFREG | 0o644) << 16
            archive.writestr(info, content)
    return path


def good_entries(**extra: bytes) -> dict[str, bytes]:
    return {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": safetensors_bytes(), **extra}


def refused(tmp_path: Path, entries: dict[str, bytes], match: str, **kwargs) -> Path:
    archive = make_zip(tmp_path / "upload.zip", entries, **kwargs)
    dest = tmp_path / "media" / "models" / "abc"
    with pytest.raises(UnsafeInputError, match=match):
        extract_model_zip(archive, dest, max_total_bytes=LIMIT, max_files=100)
    assert not dest.exists(), "the upload folder must be removed on error"
    return dest


def test_valid_model_is_extracted_with_hash_and_task(tmp_path):
    archive = make_zip(tmp_path / "m.zip", good_entries(**{"tokenizer.json": b"{}"}))
    result = extract_model_zip(archive, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)
    assert result.folder == tmp_path / "out"
    assert sorted(p.name for p in result.folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert result.format == "hf"
    assert result.task == "feature-extraction"
    assert len(result.sha256) == 64
    assert result.size_bytes == sum(p.stat().st_size for p in result.folder.iterdir())


def test_single_top_level_folder_is_stripped(tmp_path):
    entries = {f"my-model/{name}": content for name, content in good_entries().items()}
    entries["my-model/"] = b""
    archive = make_zip(tmp_path / "m.zip", entries)
    result = extract_model_zip(archive, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)
    assert (result.folder / "config.json").is_file()


def test_pickle_files_beside_safetensors_are_not_extracted(tmp_path):
    archive = make_zip(tmp_path / "m.zip", good_entries(**{"pytorch_model.bin": b"pickle", "__MACOSX/._x": b""}))
    result = extract_model_zip(archive, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)
    assert not (result.folder / "pytorch_model.bin").exists()
    assert "pytorch_model.bin" in result.skipped


def test_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "upload.zip"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(UnsafeInputError, match="not a zip archive"):
        extract_model_zip(path, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../evil.txt", r"'\.\.'"),
        ("sub/../../evil.txt", r"'\.\.'"),
        ("/etc/evil.txt", "absolute path"),
        ("C:/evil.txt", "drive letter"),
        ("sub\\evil.txt", "backslash"),
    ],
)
def test_dangerous_entry_names_are_refused(tmp_path, name, match):
    refused(tmp_path, good_entries(**{name: b"x"}), match)
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_entry_is_refused(tmp_path):
    refused(
        tmp_path,
        good_entries(**{"link": b"/etc/passwd"}),
        "symbolic link",
        modes={"link": stat.S_IFLNK | 0o777},
    )


def test_special_file_entry_is_refused(tmp_path):
    refused(tmp_path, good_entries(**{"fifo": b""}), "special file", modes={"fifo": stat.S_IFIFO | 0o644})


def test_duplicate_entries_are_refused(tmp_path):
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in good_entries().items():
            archive.writestr(name, content)
        with pytest.warns(UserWarning):
            archive.writestr("config.json", b"{}")
    with pytest.raises(UnsafeInputError, match="twice"):
        extract_model_zip(path, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)


def test_too_many_files_are_refused(tmp_path):
    entries = good_entries(**{f"extra/{i}.txt": b"x" for i in range(20)})
    archive = make_zip(tmp_path / "upload.zip", entries)
    with pytest.raises(UnsafeInputError, match="entries"):
        extract_model_zip(archive, tmp_path / "out", max_total_bytes=LIMIT, max_files=10)


def test_zip_bomb_ratio_is_refused(tmp_path):
    refused(tmp_path, good_entries(**{"zeros.bin.txt": b"\0" * (20 * 1024**2)}), "zip bomb")


def test_declared_total_size_over_limit_is_refused(tmp_path):
    archive = make_zip(tmp_path / "upload.zip", good_entries(**{"big.txt": b"abc" * 1000}))
    with pytest.raises(UnsafeInputError, match="upload limit"):
        extract_model_zip(archive, tmp_path / "out", max_total_bytes=1000, max_files=100)


def _set_declared_size(data: bytearray, entry: bytes, size: int) -> None:
    """Rewrite the uncompressed size of ``entry`` in the zip's central directory."""
    start = data.find(b"PK\x01\x02")
    while start != -1:
        name_length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46 : start + 46 + name_length] == entry:
            struct.pack_into("<I", data, start + 24, size)
            return
        start = data.find(b"PK\x01\x02", start + 4)
    raise AssertionError(f"{entry!r} not found")


def test_lying_size_headers_are_caught_while_extracting(tmp_path):
    """An entry holding more bytes than its header declares is refused, and the folder removed."""
    path = make_zip(tmp_path / "upload.zip", good_entries(**{"notes.txt": b"A" * 5000}))
    data = bytearray(path.read_bytes())
    _set_declared_size(data, b"notes.txt", 10)
    path.write_bytes(bytes(data))
    with pytest.raises(UnsafeInputError):
        extract_model_zip(path, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)
    assert not (tmp_path / "out").exists()


def test_missing_config_is_refused(tmp_path):
    refused(tmp_path, {"model.safetensors": safetensors_bytes()}, "config.json is missing")


def test_pickle_only_checkpoint_is_refused(tmp_path):
    refused(
        tmp_path,
        {"config.json": json.dumps(CONFIG).encode(), "pytorch_model.bin": b"\x80\x04pickle"},
        "pickle.*execute arbitrary code.*safetensors",
    )


def test_no_weights_at_all_is_refused(tmp_path):
    refused(tmp_path, {"config.json": json.dumps(CONFIG).encode()}, r"no \*\.safetensors")


def test_auto_map_config_is_refused(tmp_path):
    config = {**CONFIG, "auto_map": {"AutoModel": "modeling_evil.EvilModel"}}
    refused(tmp_path, good_entries(**{"config.json": json.dumps(config).encode()}), "auto_map.*trust_remote_code")


def test_auto_map_tokenizer_config_is_refused(tmp_path):
    tokenizer = {"auto_map": {"AutoTokenizer": ["tok.Evil", None]}}
    refused(tmp_path, good_entries(**{"tokenizer_config.json": json.dumps(tokenizer).encode()}), "auto_map")


def test_config_that_is_not_an_object_is_refused(tmp_path):
    refused(tmp_path, good_entries(**{"config.json": b"[1, 2]"}), "JSON object")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x01\x02", "too short"),
        (struct.pack("<Q", 200_000_000) + b"{}", "100 MB"),
        (struct.pack("<Q", 500) + b"{}", "past the end"),
        (struct.pack("<Q", 4) + b"{nop", "not valid JSON"),
        (struct.pack("<Q", 4) + b"nope", "does not start with '[{]'"),
        (struct.pack("<Q", 2) + b"[]", "JSON object"),
        (tensor_file([2, 2], [0, 999], 16), "outside"),
        (tensor_file([4, 4], [0, 16], 16), "byte length"),
        (tensor_file([-1], [0, 4], 4), "shape"),
        (safetensors_bytes({"w": "not a tensor"}), "dtype"),
        (safetensors_bytes({"__metadata__": {"a": 1}}), "__metadata__"),
    ],
)
def test_bad_safetensors_headers_are_refused(tmp_path, content, match):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(UnsafeInputError, match=match):
        validate_safetensors(path)


def test_bad_safetensors_in_archive_is_refused(tmp_path):
    refused(tmp_path, good_entries(**{"model.safetensors": struct.pack("<Q", 9999) + b"{}"}), "model.safetensors")


def test_real_safetensors_file_passes(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "real.safetensors"
    save_file({"a": np.zeros((3, 5), dtype=np.float16), "b": np.arange(7, dtype=np.int64)}, str(path))
    validate_safetensors(path)


@pytest.mark.parametrize(
    ("architectures", "task"),
    [
        (["LlamaForCausalLM"], "causal-lm"),
        (["BertForSequenceClassification"], "text-classification"),
        (["BertModel"], "feature-extraction"),
        (None, "feature-extraction"),
    ],
)
def test_task_comes_from_architectures(architectures, task):
    assert task_from_config({"architectures": architectures}) == task


def test_jsonl_text_and_pair_datasets(tmp_path):
    text = tmp_path / "text.jsonl"
    text.write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert validate_jsonl_dataset(text).rows == 2
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"query": "q", "passage": "p"}\n')
    info = validate_jsonl_dataset(pairs)
    assert (info.rows, info.kind) == (1, "pairs")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty"),
        ("not json\n", "line 1"),
        ('{"other": 1}\n', "line 1 must be"),
        ('{"text": "a"}\n{"query": "q", "passage": "p"}\n', "mixes"),
        ("[1]\n", "line 1"),
    ],
)
def test_bad_jsonl_datasets_are_refused(tmp_path, content, match):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(UnsafeInputError, match=match):
        validate_jsonl_dataset(path)
