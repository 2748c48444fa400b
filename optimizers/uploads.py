"""Safe extraction and validation of uploaded models (zipped HF folders) and datasets.

Everything a user uploads is hostile until checked. ``extract_model_zip`` refuses,
with an ``UnsafeInputError`` whose message says why:

* anything that is not a zip archive (tar, gzip and other archives are named as
  such), encrypted or unsupported entries;
* entry names with ``..``, absolute paths, drive letters, backslashes or NUL bytes,
  also after Unicode NFKC normalisation (``\uff0e\uff0e`` → ``..``); path
  components over 255 bytes; a name used both as a file and as a folder;
* symlinks, hard links and other special files (mode bits in ``external_attr``);
* too many files, too many bytes (declared sizes *and* bytes counted while
  extracting) and compression ratios typical of zip bombs;
* models that need custom code (``auto_map``, ``trust_remote_code`` or
  ``custom_pipelines`` in any ``*config.json``: remote code is never run);
* pickle checkpoints (``pytorch_model.bin``, ``*.pt``, ``*.pkl``, ``*.ckpt``...) when
  there are no ``*.safetensors`` weights: unpickling can execute code. When both
  are present the pickle files are simply not extracted;
* ``*.safetensors`` files whose header is malformed (over 100 MB, longer than the
  file, not a JSON object starting with ``{``, duplicate names, unknown dtypes),
  whose tensors lie outside the data, overlap or leave gaps, or whose byte length
  does not match dtype × shape;
* ``*.onnx`` files whose external data points outside the folder
  (``optimizers.onnx_safety``) and ``*.gguf`` files with an invalid header
  (``optimizers.gguf_info.read_gguf``).

Extraction writes only inside ``dest_dir``; on any error that folder is removed.
No Django here: the web app and the CLI share these checks.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import stat
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from optimizers.errors import UnsafeInputError
from optimizers.hashing import sha256_path, size_bytes

#: Entries bigger than this must not expand more than ``MAX_COMPRESSION_RATIO`` times.
RATIO_CHECK_MIN_BYTES = 1 << 20
MAX_COMPRESSION_RATIO = 100
#: The safetensors format itself caps the JSON header at 100 MB.
SAFETENSORS_MAX_HEADER_BYTES = 100_000_000
JSON_CONFIG_MAX_BYTES = 10 << 20
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})
#: Longest file or folder name most file systems accept (ext4, NTFS), in bytes.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
#: Keys that make transformers import code shipped with the model.
REMOTE_CODE_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines")
#: Magic numbers of archive formats people upload instead of a zip: (offset, bytes, name).
_OTHER_ARCHIVES = (
    (0, b"\x1f\x8b", "gzip (.tar.gz / .tgz)"),
    (0, b"BZh", "bzip2 (.tar.bz2)"),
    (0, b"\xfd7zXZ\x00", "xz (.tar.xz)"),
    (0, b"\x28\xb5\x2f\xfd", "zstandard (.tar.zst)"),
    (0, b"7z\xbc\xaf\x27\x1c", "7-Zip"),
    (0, b"Rar!", "RAR"),
    (257, b"ustar", "tar"),
)
#: Archive noise added by macOS Finder; never extracted.
IGNORED_PREFIXES = ("__MACOSX/",)
IGNORED_NAMES = frozenset({".DS_Store"})

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20
# Bytes per element of the safetensors dtypes with a whole-byte size.
_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
    "C64": 8,
}
#: Sub-byte safetensors dtypes, in bits per element (packed; the byte length is rounded up).
_DTYPE_BITS = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


@dataclass(frozen=True)
class UploadedModel:
    """An extracted, validated Hugging Face model folder."""

    folder: Path
    format: str
    task: str
    sha256: str
    size_bytes: int
    #: Archive entries deliberately not extracted (pickle files beside safetensors, macOS noise).
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetInfo:
    """A validated JSONL dataset: ``kind`` is ``text`` or ``pairs`` (query/passage)."""

    rows: int
    kind: str


def extract_model_zip(zip_path: Path, dest_dir: Path, max_total_bytes: int, max_files: int) -> UploadedModel:
    """Validate the zipped HF model folder at ``zip_path`` and extract it into ``dest_dir``.

    ``dest_dir`` must not exist or be empty; it is created, and removed again on
    any error. A zip holding one top-level folder (``my-model/config.json``) is
    extracted without that folder level. Raises ``UnsafeInputError``.
    """
    dest = Path(dest_dir)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"extraction folder {dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        skipped = _extract(Path(zip_path), dest, max_total_bytes, max_files)
        return _inspect_model_folder(dest, skipped)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _other_archive(path: Path) -> str | None:
    """The name of the non-zip archive format ``path`` starts with, if any."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    return next((name for offset, magic, name in _OTHER_ARCHIVES if head[offset : offset + len(magic)] == magic), None)


def _extract(zip_path: Path, dest: Path, max_total_bytes: int, max_files: int) -> tuple[str, ...]:
    # Checked before is_zipfile: a tar whose last member is a zip would pass for a zip.
    if kind := _other_archive(zip_path):
        raise UnsafeInputError(
            f"the upload is a {kind} archive; only .zip is accepted (tar archives are not, because their "
            "links and device entries are unsafe to extract): zip the model folder saved with save_pretrained"
        )
    if not zipfile.is_zipfile(zip_path):
        raise UnsafeInputError("the upload is not a zip archive: zip the model folder saved with save_pretrained")
    try:
        with zipfile.ZipFile(zip_path) as archive:
            plan, skipped = _plan(archive.infolist(), max_total_bytes, max_files)
            written = 0
            for info, relative in plan:
                written = _copy_entry(archive, info, dest, relative, written, max_total_bytes)
    except zipfile.BadZipFile as error:
        raise UnsafeInputError(f"the zip archive is corrupt: {error}") from None
    except NotImplementedError as error:
        raise UnsafeInputError(f"the zip archive uses an unsupported feature: {error}") from None
    return skipped


def _plan(
    infos: list[zipfile.ZipInfo], max_total_bytes: int, max_files: int
) -> tuple[list[tuple[zipfile.ZipInfo, PurePosixPath]], tuple[str, ...]]:
    """Check every entry before writing anything; return (files to extract, skipped names)."""
    if len(infos) > max_files:
        raise UnsafeInputError(f"the archive has {len(infos)} entries; at most {max_files} are accepted")
    seen: set[str] = set()
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    skipped: list[str] = []
    declared = 0
    for info in infos:
        path = _safe_entry_path(info)
        if info.filename in seen:
            raise UnsafeInputError(f"the archive holds '{info.filename}' twice")
        seen.add(info.filename)
        if info.flag_bits & 0x1:
            raise UnsafeInputError(f"'{info.filename}' is encrypted; upload an unencrypted zip")
        if info.is_dir():
            continue
        if info.filename.startswith(IGNORED_PREFIXES) or path.name in IGNORED_NAMES:
            skipped.append(info.filename)
            continue
        declared += info.file_size
        if declared > max_total_bytes:
            raise UnsafeInputError(f"the archive expands to more than {max_total_bytes} bytes, the upload limit")
        if info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(
            info.compress_size, 1
        ):
            raise UnsafeInputError(
                f"'{info.filename}' expands {info.file_size / max(info.compress_size, 1):.0f}× "
                f"(more than {MAX_COMPRESSION_RATIO}×): refused as a possible zip bomb"
            )
        files.append((info, path))

    files = _strip_common_folder(files)
    names = {path.as_posix() for _, path in files}
    _refuse_file_folder_clashes(names)
    if "config.json" not in names:
        raise UnsafeInputError(
            "config.json is missing: upload a zip of a Hugging Face model folder (as written by save_pretrained)"
        )
    has_safetensors = any(path.suffix == ".safetensors" for _, path in files)
    pickles = [path.as_posix() for _, path in files if path.suffix.lower() in PICKLE_SUFFIXES]
    if not has_safetensors:
        if pickles:
            raise UnsafeInputError(
                f"the weights are only in pickle format ({', '.join(sorted(pickles)[:3])}); loading a pickle "
                "can execute arbitrary code, so it is refused. Convert the checkpoint to safetensors "
                "(load it somewhere you trust and call model.save_pretrained(folder), which writes "
                "model.safetensors) and upload again"
            )
        raise UnsafeInputError(
            "no *.safetensors weights found: upload the folder written by model.save_pretrained(folder)"
        )
    kept = []
    for info, path in files:
        if path.suffix.lower() in PICKLE_SUFFIXES:
            skipped.append(info.filename)  # never needed beside safetensors, never unpickled
        else:
            kept.append((info, path))
    return kept, tuple(skipped)


def _refuse_file_folder_clashes(names: set[str]) -> None:
    """A name that is a file and also the folder of another entry cannot be extracted."""
    for name in names:
        parts = PurePosixPath(name).parts
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in names:
                raise UnsafeInputError(f"'{prefix}' is both a file and the folder of '{name}'")


def _safe_entry_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """The entry's relative path; refuse names or types that could escape the folder."""
    name = info.orig_filename
    if "\0" in name:
        raise UnsafeInputError(f"entry name {name!r} contains a NUL byte")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafeInputError(f"entry name {name[:40]!r}… is longer than {MAX_PATH_BYTES} bytes")
    # Compatibility forms (fullwidth dots and slashes, "‥") become "..", "/" on some systems and tools.
    normalized = unicodedata.normalize("NFKC", name)
    if normalized != name:
        _check_entry_name(normalized, f"{name!r} (normalized to {normalized!r})")
    path = _check_entry_name(name, f"'{name}'")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise UnsafeInputError(f"entry '{name}' is a symbolic link; links are refused")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeInputError(f"entry '{name}' is a special file; only regular files are accepted")
    return path


def _check_entry_name(name: str, shown: str) -> PurePosixPath:
    if "\\" in name:
        raise UnsafeInputError(f"entry {shown} contains a backslash (a Windows path); only '/' separators are accepted")
    if name.startswith("/"):
        raise UnsafeInputError(f"entry {shown} is an absolute path")
    if _DRIVE_LETTER.match(name):
        raise UnsafeInputError(f"entry {shown} starts with a drive letter (a Windows path)")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise UnsafeInputError(f"entry {shown} contains '..' (path traversal)")
    if not path.parts:
        raise UnsafeInputError(f"entry name {shown} is empty")
    for part in path.parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise UnsafeInputError(f"entry {shown[:60]}… has a name longer than {MAX_NAME_BYTES} bytes")
    return path


def _strip_common_folder(
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]],
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Drop a single top-level folder that holds everything (zipping a folder adds one)."""
    if not files or any(len(path.parts) < 2 for _, path in files):
        return files
    roots = {path.parts[0] for _, path in files}
    if len(roots) != 1:
        return files
    return [(info, PurePosixPath(*path.parts[1:])) for info, path in files]


def _copy_entry(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    dest: Path,
    relative: PurePosixPath,
    written: int,
    max_total_bytes: int,
) -> int:
    target = dest.joinpath(*relative.parts)
    # Names were checked already; this guards the join itself.
    if not target.resolve().is_relative_to(dest.resolve()):
        raise UnsafeInputError(f"entry '{info.filename}' would be written outside the upload folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    entry_bytes = 0
    with archive.open(info) as source, open(target, "xb") as sink:
        while chunk := source.read(_CHUNK):
            entry_bytes += len(chunk)
            written += len(chunk)
            if entry_bytes > info.file_size:
                raise UnsafeInputError(f"'{info.filename}' holds more bytes than its header declares")
            if written > max_total_bytes:
                raise UnsafeInputError(f"the archive expands to more than {max_total_bytes} bytes, the upload limit")
            sink.write(chunk)
    target.chmod(0o644)
    return written


def _inspect_model_folder(folder: Path, skipped: tuple[str, ...]) -> UploadedModel:
    config = _read_json_object(folder / "config.json")
    for path in sorted(folder.glob("*config.json")):
        values = config if path.name == "config.json" else _read_json_object(path)
        if found := [key for key in REMOTE_CODE_KEYS if key in values]:
            raise UnsafeInputError(
                f"{path.name} has {found[0]!r}: this model needs its own Python code (trust_remote_code), "
                "which is never run here. Upload a model of an architecture built into transformers"
            )
    for weights in sorted(folder.rglob("*.safetensors")):
        validate_safetensors(weights, display_name=weights.relative_to(folder).as_posix())
    _check_other_model_files(folder)
    return UploadedModel(
        folder=folder,
        format="hf",
        task=task_from_config(config),
        sha256=sha256_path(folder),
        size_bytes=size_bytes(folder),
        skipped=skipped,
    )


def _check_other_model_files(folder: Path) -> None:
    """ONNX graphs and GGUF files in the upload get their own header checks (loaded by other runtimes)."""
    from optimizers.gguf_info import read_gguf
    from optimizers.onnx_safety import check_onnx_external_data

    for path in sorted(folder.rglob("*.onnx")):
        check_onnx_external_data(path)
    for path in sorted(folder.rglob("*.gguf")):
        try:
            read_gguf(path)
        except UnsafeInputError as error:
            raise UnsafeInputError(f"{path.relative_to(folder).as_posix()}: {error}") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    if path.stat().st_size > JSON_CONFIG_MAX_BYTES:
        raise UnsafeInputError(f"{path.name} is larger than {JSON_CONFIG_MAX_BYTES} bytes")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise UnsafeInputError(f"{path.name} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise UnsafeInputError(f"{path.name} must hold a JSON object")
    return value


def task_from_config(config: dict[str, Any]) -> str:
    """The task implied by ``architectures`` (``…ForCausalLM`` → causal-lm, ...)."""
    architectures = config.get("architectures") or []
    names = [name for name in architectures if isinstance(name, str)] if isinstance(architectures, list) else []
    if any(name.endswith("ForCausalLM") for name in names):
        return "causal-lm"
    if any(name.endswith("ForSequenceClassification") for name in names):
        return "text-classification"
    if any(name.endswith("ForImageClassification") for name in names):
        return "image-classification"
    return "feature-extraction"


def validate_safetensors(path: Path, display_name: str | None = None) -> None:
    """Check a ``.safetensors`` header: length, JSON object, dtype/shape/offsets in range.

    The tensor data itself is not read. Raises ``UnsafeInputError``.
    """
    label = display_name or Path(path).name
    file_size = Path(path).stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise UnsafeInputError(f"{label}: too short to be a safetensors file")
        header_len = int.from_bytes(prefix, "little")
        if header_len > SAFETENSORS_MAX_HEADER_BYTES:
            raise UnsafeInputError(f"{label}: safetensors header of {header_len} bytes exceeds the 100 MB limit")
        if 8 + header_len > file_size:
            raise UnsafeInputError(f"{label}: safetensors header length points past the end of the file")
        raw = handle.read(header_len)
    # The format requires the header to start with '{' (readers rely on it to tell it from other files).
    if not raw.startswith(b"{"):
        raise UnsafeInputError(f"{label}: safetensors header does not start with '{{' (not a JSON object)")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_refuse_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise UnsafeInputError(f"{label}: safetensors header is not valid JSON") from None
    except _DuplicateKey as duplicate:
        raise UnsafeInputError(f"{label}: safetensors header names {duplicate.args[0]!r} twice") from None
    if not isinstance(header, dict):
        raise UnsafeInputError(f"{label}: safetensors header must be a JSON object")
    data_len = file_size - 8 - header_len
    ranges = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise UnsafeInputError(f"{label}: __metadata__ must map strings to strings")
            continue
        ranges.append((*_check_tensor_entry(label, name, entry, data_len), name))
    _check_layout(label, sorted(ranges), data_len)


class _DuplicateKey(Exception):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last duplicate silently; two tensors of one name could hide one from a check.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _check_layout(label: str, ranges: list[tuple[int, int, str]], data_len: int) -> None:
    """Tensors must tile the data section exactly: no overlap (aliasing), no gap, nothing after."""
    position = 0
    previous = None
    for begin, end, name in ranges:
        if begin < position:
            raise UnsafeInputError(
                f"{label}: tensor '{name}' overlaps tensor '{previous}' (data_offsets {begin}..{end})"
            )
        if begin > position:
            raise UnsafeInputError(f"{label}: {begin - position} unused bytes before tensor '{name}'")
        position, previous = end, name
    if position != data_len:
        raise UnsafeInputError(f"{label}: {data_len - position} bytes after the last tensor belong to no tensor")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_tensor_entry(label: str, name: str, entry: Any, data_len: int) -> tuple[int, int]:
    """(begin, end) of one tensor's bytes in the data section, after checking its entry."""
    if not isinstance(entry, dict):
        raise UnsafeInputError(f"{label}: tensor '{name}' has no dtype/shape/data_offsets")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise UnsafeInputError(f"{label}: tensor '{name}' has no dtype")
    if not isinstance(shape, list) or not all(_is_int(dim) and dim >= 0 for dim in shape):
        raise UnsafeInputError(f"{label}: tensor '{name}' has an invalid shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise UnsafeInputError(f"{label}: tensor '{name}' has invalid data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise UnsafeInputError(f"{label}: tensor '{name}' data_offsets [{begin}, {end}] lie outside the file")
    if dtype in _DTYPE_BYTES:
        expected = math.prod(shape) * _DTYPE_BYTES[dtype]
    elif dtype in _DTYPE_BITS:
        expected = math.ceil(math.prod(shape) * _DTYPE_BITS[dtype] / 8)
    else:
        raise UnsafeInputError(f"{label}: tensor '{name}' has an unknown dtype {dtype[:20]!r}")
    if end - begin != expected:
        raise UnsafeInputError(
            f"{label}: tensor '{name}' byte length {end - begin} does not match its dtype and shape "
            f"({dtype} {shape} = {expected} bytes)"
        )
    return begin, end


def validate_jsonl_dataset(path: Path, max_rows: int = 1_000_000, max_line_bytes: int = 1 << 20) -> DatasetInfo:
    """Check a JSONL text dataset: every line ``{"text": ...}`` or every line ``{"query", "passage"}``.

    Blank lines are ignored. Raises ``UnsafeInputError`` naming the first bad line.
    """
    rows = 0
    kind: str | None = None
    with open(path, "rb") as handle:
        for number, line in enumerate(iter(lambda: handle.readline(max_line_bytes + 1), b""), start=1):
            if len(line) > max_line_bytes:
                raise UnsafeInputError(f"line {number} is longer than {max_line_bytes} bytes")
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                raise UnsafeInputError(f"line {number} is not valid UTF-8 JSON") from None
            row_kind = _row_kind(row)
            if row_kind is None:
                raise UnsafeInputError(
                    f'line {number} must be an object {{"text": "..."}} or {{"query": "...", "passage": "..."}}'
                )
            if kind is not None and row_kind != kind:
                raise UnsafeInputError(f"line {number} mixes {row_kind} rows into a {kind} dataset")
            kind = row_kind
            rows += 1
            if rows > max_rows:
                raise UnsafeInputError(f"the dataset has more than {max_rows} rows")
    if kind is None:
        raise UnsafeInputError("the dataset is empty: one JSON object per line expected")
    return DatasetInfo(rows=rows, kind=kind)


def _row_kind(row: Any) -> str | None:
    if not isinstance(row, dict):
        return None
    if isinstance(row.get("text"), str):
        return "text"
    if isinstance(row.get("query"), str) and isinstance(row.get("passage"), str):
        return "pairs"
    return None
