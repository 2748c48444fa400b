"""Hostile uploads refused by optimizers.uploads: each case its own test, a clear reason, nothing left behind.

Complements test_uploads.py (traversal, symlinks, bombs, basic safetensors headers):
archive formats other than zip, hostile entry names (NUL, over 255 bytes, Windows
paths, Unicode that normalises to ``..``), every pickle suffix, remote-code keys in
any config, safetensors layouts (overlap, gaps, sub-byte dtypes, duplicate names)
and ONNX / GGUF files inside an upload. A source scan keeps ``torch.load`` and
``trust_remote_code=True`` out of the code base.
"""

from __future__ import annotations

import ast
import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizers.errors import UnsafeInputError
from optimizers.uploads import extract_model_zip, validate_safetensors
from tests.optimizers.test_uploads import CONFIG, good_entries, make_zip, refused, safetensors_bytes

LIMIT = 50 * 1024**2
REPO = Path(__file__).resolve().parents[2]


def everything_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- archive formats -------------------------------------------------------------------------


def _tar_bytes(mode: str, members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        if symlink:
            link = tarfile.TarInfo("evil-link")
            link.type, link.linkname = tarfile.SYMTYPE, symlink
            archive.addfile(link)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("w", "a tar archive"), ("w:gz", "gzip"), ("w:bz2", "bzip2"), ("w:xz", "xz")],
)
def test_tar_archives_are_refused_by_name_and_nothing_is_extracted(tmp_path, mode, kind):
    members = {"../evil.txt": b"x", "/tmp/abs-evil.txt": b"x", **good_entries()}
    upload = tmp_path / "upload.zip"
    upload.write_bytes(_tar_bytes(mode, members, symlink="/etc/passwd"))
    dest = tmp_path / "abc"
    with pytest.raises(UnsafeInputError, match=f"{kind}.*only .zip is accepted"):
        extract_model_zip(upload, dest, max_total_bytes=LIMIT, max_files=100)
    assert not dest.exists()
    assert everything_under(tmp_path) == ["upload.zip"]


def test_a_tar_ending_in_a_zip_is_still_refused_as_tar(tmp_path):
    """zipfile finds a zip at the end of any file; a tar holding a zip must not slip through."""
    inner = make_zip(tmp_path / "inner.zip", good_entries()).read_bytes()
    upload = tmp_path / "upload.zip"
    upload.write_bytes(_tar_bytes("w", {"model.zip": inner}))
    assert zipfile.is_zipfile(upload)
    with pytest.raises(UnsafeInputError, match="tar archive"):
        extract_model_zip(upload, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)


# --- entry names -----------------------------------------------------------------------------


def _zip_with_raw_name(path: Path, placeholder: str, raw: bytes) -> Path:
    """A good model zip plus one entry whose stored name bytes are ``raw`` (zipfile cannot write NULs)."""
    assert len(placeholder.encode()) == len(raw)
    make_zip(path, good_entries(**{placeholder: b"x"}))
    path.write_bytes(path.read_bytes().replace(placeholder.encode(), raw))
    return path


def test_entry_name_with_a_nul_byte_is_refused(tmp_path):
    upload = _zip_with_raw_name(tmp_path / "upload.zip", "evil.txtXsafe.txt", b"evil.txt\0safe.txt")
    with pytest.raises(UnsafeInputError, match="NUL byte"):
        extract_model_zip(upload, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)
    assert not (tmp_path / "out").exists()


def test_entry_name_over_255_bytes_is_refused(tmp_path):
    refused(tmp_path, good_entries(**{"a" * 256 + ".txt": b"x"}), "longer than 255 bytes")
    # 255 bytes is fine (and multi-byte characters count as bytes, not characters).
    ok = make_zip(tmp_path / "ok.zip", good_entries(**{"b" * 255: b"x"}))
    extract_model_zip(ok, tmp_path / "ok", max_total_bytes=LIMIT, max_files=100)
    refused(tmp_path, good_entries(**{"é" * 128: b"x"}), "longer than 255 bytes")


def test_entry_path_over_4096_bytes_is_refused(tmp_path):
    refused(tmp_path, good_entries(**{"/".join(["d" * 200] * 21) + "/x.txt": b"x"}), "longer than 4096 bytes")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("C:\\Windows\\evil.txt", "backslash"),
        ("..\\..\\evil.txt", "backslash"),
        ("C:evil.txt", "drive letter"),
        ("\\\\server\\share\\evil.txt", "backslash"),
    ],
)
def test_windows_paths_are_refused(tmp_path, name, match):
    refused(tmp_path, good_entries(**{name: b"x"}), match)


@pytest.mark.parametrize(
    "name",
    [
        "\uff0e\uff0e/evil.txt",  # fullwidth full stops
        "\u2025/evil.txt",  # two dot leader
        "sub/\ufe52\ufe52/\ufe52\ufe52/evil.txt",  # small full stops
        "\uff0fetc/evil.txt",  # fullwidth solidus: an absolute path once normalised
    ],
)
def test_unicode_names_that_normalize_to_traversal_are_refused(tmp_path, name):
    refused(tmp_path, good_entries(**{name: b"x"}), "normalized to")


def test_a_name_used_as_file_and_folder_is_refused(tmp_path):
    refused(tmp_path, good_entries(**{"tokenizer": b"x", "tokenizer/vocab.txt": b"y"}), "both a file and the folder")


# --- pickle checkpoints and remote code ------------------------------------------------------


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.pkl", "model.pth", "last.ckpt"])
def test_pickle_only_checkpoints_are_refused(tmp_path, name):
    refused(tmp_path, {"config.json": json.dumps(CONFIG).encode(), name: b"\x80\x04cos\nsystem\n."}, "pickle")


@pytest.mark.parametrize("name", ["training_args.bin", "optimizer.pt", "rng_state.pth", "extra.pkl", "sub/x.ckpt"])
def test_pickles_beside_safetensors_are_never_written(tmp_path, name):
    archive = make_zip(tmp_path / "m.zip", good_entries(**{name: b"\x80\x04cos\nsystem\n."}))
    result = extract_model_zip(archive, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)
    assert name in result.skipped
    assert sorted(p.name for p in result.folder.rglob("*") if p.is_file()) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize(
    ("file", "values"),
    [
        ("config.json", {**CONFIG, "trust_remote_code": True}),
        ("config.json", {**CONFIG, "custom_pipelines": {"x": {"impl": "pipe.Evil"}}}),
        ("preprocessor_config.json", {"auto_map": {"AutoProcessor": "proc.Evil"}}),
        ("processor_config.json", {"auto_map": {"AutoProcessor": "proc.Evil"}}),
        ("generation_config.json", {"trust_remote_code": True}),
    ],
)
def test_remote_code_in_any_config_is_refused(tmp_path, file, values):
    refused(tmp_path, good_entries(**{file: json.dumps(values).encode()}), f"{file} has .*trust_remote_code")


def _python_calls(path: Path) -> list[tuple[str, ast.Call]]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            name = ast.unparse(node.func)
            calls.append((name, node))
    return calls


def test_no_code_path_unpickles_or_runs_remote_code():
    """torch.load only with weights_only=True; no pickle/joblib loads; never trust_remote_code=True."""
    problems = []
    for folder in ("optimizers", "workers", "webapp"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for name, call in _python_calls(path):
                keywords = {kw.arg: kw.value for kw in call.keywords}
                where = f"{path.relative_to(REPO)}:{call.lineno}"
                if name.endswith("torch.load"):
                    safe = keywords.get("weights_only")
                    if not (isinstance(safe, ast.Constant) and safe.value is True):
                        problems.append(f"{where}: torch.load without weights_only=True")
                if name in ("pickle.load", "pickle.loads", "joblib.load", "dill.load", "cloudpickle.load"):
                    problems.append(f"{where}: {name}")
                remote = keywords.get("trust_remote_code")
                if remote is not None and not (isinstance(remote, ast.Constant) and remote.value is False):
                    problems.append(f"{where}: trust_remote_code is not False")
                allow = keywords.get("allow_pickle")
                if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                    problems.append(f"{where}: allow_pickle")
    assert problems == []


# --- safetensors layouts ---------------------------------------------------------------------


def _raw_safetensors(header_json: bytes, data: bytes) -> bytes:
    return struct.pack("<Q", len(header_json)) + header_json + data


@pytest.mark.parametrize(
    ("content", "match"),
    [
        # two tensors sharing bytes (aliasing one buffer to two names)
        (
            safetensors_bytes(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                b"\0" * 12,
            ),
            "overlaps",
        ),
        # a tensor pointing past the data section
        (
            safetensors_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}, b"\0" * 16),
            "outside the file",
        ),
        # bytes that belong to no tensor (smuggled payload between tensors)
        (
            safetensors_bytes(
                {
                    "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
                },
                b"\0" * 12,
            ),
            "unused bytes",
        ),
        (safetensors_bytes({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9), "after the last"),
        # dtype × shape does not match the bytes
        (safetensors_bytes({"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "F16 \\[3\\]"),
        (safetensors_bytes({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}, b"\0"), "byte length 1"),
        (safetensors_bytes({"a": {"dtype": "Q9_EVIL", "shape": [1], "data_offsets": [0, 1]}}, b"\0"), "unknown dtype"),
        # header not starting with '{'
        (_raw_safetensors(b' {"a": 1}', b""), "does not start with"),
        (_raw_safetensors(b"\xef\xbb\xbf{}", b""), "does not start with"),
        # the same tensor name twice: a checker would see one, a loader the other
        (
            _raw_safetensors(
                b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
                b' "a": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4]}}',
                b"\0" * 4,
            ),
            "names 'a' twice",
        ),
    ],
)
def test_hostile_safetensors_layouts_are_refused(tmp_path, content, match):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(UnsafeInputError, match=match):
        validate_safetensors(path)


def test_header_over_100_mb_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 100_000_001) + b"{")  # the file is 9 bytes: nothing is read
    with pytest.raises(UnsafeInputError, match="100 MB"):
        validate_safetensors(path)


def test_header_longer_than_the_file_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 64) + b"{}")
    with pytest.raises(UnsafeInputError, match="past the end of the file"):
        validate_safetensors(path)


def test_real_safetensors_with_several_dtypes_pass(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "real.safetensors"
    tensors = {"a": np.zeros((3, 5), np.float16), "b": np.arange(7, dtype=np.int64), "c": np.ones(1, np.bool_)}
    save_file(tensors, str(path), metadata={"format": "pt"})
    validate_safetensors(path)


# --- ONNX and GGUF files inside an upload ----------------------------------------------------


def _onnx_bytes(location: str) -> bytes:
    tensor = numpy_helper.from_array(np.zeros(4, dtype=np.float32), name="w")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [tensor],
    )
    return helper.make_model(graph).SerializeToString()


@pytest.mark.parametrize("location", ["../../../etc/passwd", "sub/../../secret.bin", "/etc/passwd", "C:\\x.bin"])
def test_onnx_in_an_upload_with_escaping_external_data_is_refused(tmp_path, location):
    refused(tmp_path, good_entries(**{"model.onnx": _onnx_bytes(location)}), "outside the model folder")


def test_onnx_in_an_upload_with_local_external_data_is_accepted(tmp_path):
    archive = make_zip(tmp_path / "m.zip", good_entries(**{"model.onnx": _onnx_bytes("w.bin"), "w.bin": b"\0" * 16}))
    result = extract_model_zip(archive, tmp_path / "out", max_total_bytes=LIMIT, max_files=100)
    assert (result.folder / "model.onnx").is_file()


def test_gguf_in_an_upload_with_a_huge_key_value_count_is_refused(tmp_path):
    hostile = b"GGUF" + struct.pack("<IQQ", 3, 0, 2**62)
    refused(tmp_path, good_entries(**{"model.gguf": hostile}), "model.gguf: GGUF header refused.*key-value")
