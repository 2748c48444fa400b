"""Hostile uploads through the API and the web form: a 400 with the reason, nothing stored, never a 500.

test_model_upload.py covers traversal, symlinks, pickle-only, auto_map, ratio bombs
and the size cap; this file adds the rest of issue 8's list: tar archives, hostile
entry names, every pickle suffix, ONNX/GGUF inside a model, safetensors layouts,
file-count and expanded-size limits, hostile upload file names, too many form
fields or files, truncated bodies, and a cap enforced while the body streams in.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.optimizers.test_gguf_header import gguf_file, tensor_info
from tests.optimizers.test_hostile_inputs import _onnx_bytes
from tests.webapp.helpers import TINY_CONFIG, api_client_for, client_for, files_under, json_body, model_zip
from tests.webapp.helpers import safetensors_bytes as st_bytes
from webapp.catalog.models import Dataset, ModelEntry

pytestmark = pytest.mark.django_db

CONFIG = json.dumps(TINY_CONFIG).encode()


def upload(client, content: bytes, filename: str = "model.zip", url: str = "/api/v1/models"):
    return client.post(url, {"name": "hostile", "file": SimpleUploadedFile(filename, content)})


def tar_of(entries: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        link = tarfile.TarInfo("hardlink")
        link.type, link.linkname = tarfile.LNKTYPE, "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


def raw_name_zip(placeholder: str, raw: bytes) -> bytes:
    return model_zip(**{placeholder: b"x"}).replace(placeholder.encode(), raw)


def two_tensors(second_offsets: list[int], data: int) -> bytes:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": second_offsets},
    }
    return st_bytes(header, b"\0" * data)


HOSTILE = {
    "tar.gz with traversal and a hard link": (tar_of({"../evil.txt": b"x", "config.json": CONFIG}), "gzip"),
    "plain tar": (tar_of({"config.json": CONFIG}, mode="w"), "tar archive"),
    "NUL in an entry name": (raw_name_zip("evil.txtXok", b"evil.txt\0ok"), "NUL byte"),
    "entry name over 255 bytes": (model_zip(**{"n" * 300: b"x"}), "longer than 255 bytes"),
    "Windows absolute path": (model_zip(**{"C:\\Users\\evil.txt": b"x"}), "Windows path"),
    "Windows traversal": (model_zip(**{"..\\..\\evil.txt": b"x"}), "backslash"),
    "fullwidth dots": (model_zip(**{"\uff0e\uff0e/\uff0e\uff0e/evil.txt": b"x"}), "normalized to '../../evil.txt'"),
    "file and folder of one name": (model_zip(**{"vocab": b"x", "vocab/a.txt": b"y"}), "both a file and the folder"),
    "pickle .pt only": (model_zip({"config.json": CONFIG, "model.pt": b"\x80\x04."}), "pickle"),
    "pickle .pkl only": (model_zip({"config.json": CONFIG, "model.pkl": b"\x80\x04."}), "pickle"),
    "pickle .pth only": (model_zip({"config.json": CONFIG, "model.pth": b"\x80\x04."}), "pickle"),
    "pickle .ckpt only": (model_zip({"config.json": CONFIG, "last.ckpt": b"\x80\x04."}), "pickle"),
    "trust_remote_code": (
        model_zip(**{"config.json": json.dumps({**TINY_CONFIG, "trust_remote_code": True}).encode()}),
        "trust_remote_code",
    ),
    "auto_map in tokenizer_config": (
        model_zip(**{"tokenizer_config.json": json.dumps({"auto_map": {"AutoTokenizer": ["t.T", None]}}).encode()}),
        "tokenizer_config.json has 'auto_map'",
    ),
    "safetensors header over 100 MB": (
        model_zip(**{"model.safetensors": struct.pack("<Q", 100_000_001) + b"{}"}),
        "100 MB",
    ),
    "safetensors header longer than the file": (
        model_zip(**{"model.safetensors": struct.pack("<Q", 1000) + b"{}"}),
        "past the end",
    ),
    "safetensors header not starting with {": (
        model_zip(**{"model.safetensors": struct.pack("<Q", 6) + b'["x"] '}),
        "does not start with",
    ),
    "safetensors overlapping tensors": (model_zip(**{"model.safetensors": two_tensors([4, 12], 12)}), "overlaps"),
    "safetensors offsets out of range": (model_zip(**{"model.safetensors": two_tensors([8, 64], 16)}), "outside"),
    "safetensors dtype x shape mismatch": (
        model_zip(
            **{
                "model.safetensors": st_bytes(
                    {"w": {"dtype": "F32", "shape": [3, 3], "data_offsets": [0, 16]}}, b"\0" * 16
                )
            }
        ),
        "does not match its dtype and shape",
    ),  # fmt: skip
    "ONNX external data ../": (model_zip(**{"model.onnx": _onnx_bytes("../../etc/passwd")}), "outside the model"),
    "ONNX external data subdir/../../": (model_zip(**{"model.onnx": _onnx_bytes("a/../../x")}), "outside the model"),
    "ONNX external data absolute": (model_zip(**{"model.onnx": _onnx_bytes("/etc/passwd")}), "outside the model"),
    "GGUF huge key-value count": (model_zip(**{"model.gguf": gguf_file(kv_count=2**62)}), "key-value pairs"),
    "GGUF overflowing dims": (
        model_zip(**{"model.gguf": gguf_file(tensors=[tensor_info("w", (2**40, 2**40), 0, 0)])}),
        "overflow",
    ),
    "truncated zip": (model_zip()[:-30], "not a zip archive"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_model_upload_is_refused_with_the_reason(case, owner, data_dir, tmp_path):
    content, reason = HOSTILE[case]
    response = upload(api_client_for(owner), content)
    assert response.status_code == 400, response.content
    assert reason in json_body(response)["error"]
    assert files_under(data_dir) == []
    assert not ModelEntry.objects.filter(source="upload").exists()
    assert not list(tmp_path.rglob("evil.txt")) and not Path("/tmp/evil.txt").exists()


@pytest.mark.parametrize("case", ["plain tar", "fullwidth dots", "GGUF huge key-value count"])
def test_hostile_model_upload_through_the_page_shows_the_reason(case, owner, team, data_dir):
    content, reason = HOSTILE[case]
    response = client_for(owner).post(
        reverse("catalog:model_upload"), {"team": team.pk, "name": "x", "file": SimpleUploadedFile("m.zip", content)}
    )
    assert response.status_code == 400
    assert reason in response.content.decode() or reason.replace("'", "&#x27;") in response.content.decode()
    assert files_under(data_dir) == []


def test_more_files_than_the_limit_are_refused(owner, settings, data_dir):
    settings.INFEROPT_UPLOAD_MAX_FILES = 5
    response = upload(api_client_for(owner), model_zip(**{f"extra/{i}.txt": b"x" for i in range(10)}))
    assert response.status_code == 400
    assert "at most 5 are accepted" in json_body(response)["error"]
    assert files_under(data_dir) == []


def test_archive_expanding_past_the_total_limit_is_refused(owner, settings, data_dir):
    settings.INFEROPT_UPLOAD_MAX_EXTRACTED_BYTES = 4096
    response = upload(api_client_for(owner), model_zip(**{"notes.txt": b"n" * 8000}))
    assert response.status_code == 400
    assert "upload limit" in json_body(response)["error"]
    assert files_under(data_dir) == []


# --- hostile upload file names (the multipart filename, never used in a stored path) ---------

HOSTILE_FILENAMES = [
    "evil\0.jsonl",
    "n" * 300 + ".jsonl",
    "C:\\Users\\evil\\..\\..\\data.jsonl",
    "..\\..\\data.jsonl",
    "../../../etc/data.jsonl",
    "\uff0e\uff0e/\uff0e\uff0e/data.jsonl",
    "<svg onload=alert(1)>.jsonl",
]


@pytest.mark.parametrize("filename", HOSTILE_FILENAMES)
def test_hostile_dataset_file_names_never_reach_the_disk(owner, data_dir, filename):
    response = upload(api_client_for(owner), b'{"text": "a"}\n', filename=filename, url="/api/v1/datasets")
    assert response.status_code == 201, response.content
    dataset = Dataset.objects.get()
    stored = files_under(data_dir)
    assert stored == [f"media/{dataset.file.name}"]
    assert Path(dataset.file.name).parent.as_posix() == "datasets"
    assert len(Path(dataset.file.name).stem) == 32 and Path(dataset.file.name).suffix == ".jsonl"


@pytest.mark.parametrize("filename", HOSTILE_FILENAMES[:4])
def test_hostile_model_file_names_never_reach_the_disk(owner, data_dir, filename):
    response = upload(api_client_for(owner), model_zip(), filename=filename)
    assert response.status_code == 201, response.content
    entry = ModelEntry.objects.get(source="upload")
    assert sorted(files_under(data_dir)) == [
        f"inputs/{entry.archive_sha256}/model/config.json",
        f"inputs/{entry.archive_sha256}/model/model.safetensors",
        f"media/{entry.archive.name}",
    ]
    assert Path(entry.archive.name).parent.parent.as_posix() == "models"
    assert len(Path(entry.archive.name).parent.name) == 32 and Path(entry.archive.name).name == "model.zip"


# --- request limits: form fields, file count, truncated bodies, streaming cap ---------------


def test_more_than_1000_form_fields_is_a_400_page(owner, data_dir):
    client = client_for(owner)
    response = client.post(reverse("catalog:model_upload"), {f"f{i}": "x" for i in range(1001)})
    assert response.status_code == 400
    assert "more than 1000 form fields" in response.content.decode()


def test_more_than_1000_form_fields_is_a_400_json_for_the_api(owner, data_dir):
    response = api_client_for(owner).post("/api/v1/models", {f"f{i}": "x" for i in range(1001)})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert json_body(response) == {"error": "the request has more than 1000 form fields"}


def test_more_than_100_files_is_a_400_and_leaves_no_temporary_file(owner, data_dir):
    files = {f"file{i}": SimpleUploadedFile(f"{i}.zip", b"PK" * 100) for i in range(101)}
    response = api_client_for(owner).post("/api/v1/models", {"name": "x", **files})
    assert response.status_code == 400
    assert json_body(response) == {"error": "the request has more than 100 files"}
    page = client_for(owner).post(reverse("catalog:dataset_upload"), files)
    assert page.status_code == 400
    assert "more than 100 files" in page.content.decode()
    assert files_under(data_dir) == []


def _multipart(boundary: str, name: str, filename: str, content: bytes, *, closed: bool = True) -> bytes:
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode() + content
    return body + (f"\r\n--{boundary}--\r\n".encode() if closed else b"")


def test_truncated_multipart_body_is_a_400_and_stores_nothing(owner, team, data_dir):
    body = _multipart("B0UNDARY", "cut", "m.zip", model_zip()[:200], closed=False)
    api = api_client_for(owner).generic(
        "POST", "/api/v1/models", body, content_type="multipart/form-data; boundary=B0UNDARY"
    )
    assert api.status_code == 400
    assert "file" in json_body(api)["error"]
    page = client_for(owner).generic(
        "POST", reverse("catalog:model_upload"), body, content_type="multipart/form-data; boundary=B0UNDARY"
    )
    assert page.status_code == 400
    assert files_under(data_dir) == [] and not ModelEntry.objects.filter(source="upload").exists()


def test_truncated_zip_inside_a_complete_body_is_a_400(owner, data_dir):
    body = _multipart("B0UNDARY", "cut", "m.zip", model_zip()[: len(model_zip()) // 2])
    response = api_client_for(owner).generic(
        "POST", "/api/v1/models", body, content_type="multipart/form-data; boundary=B0UNDARY"
    )
    assert response.status_code == 400
    assert "not a zip archive" in json_body(response)["error"]
    assert files_under(data_dir) == []


class CountingBody:
    """A request body generated on the fly (``size`` bytes of file data) that counts what was read."""

    def __init__(self, boundary: str, file_bytes: int) -> None:
        self.head = _multipart(boundary, "big", "big.zip", b"", closed=False)
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.file_bytes = file_bytes
        self.size = len(self.head) + file_bytes + len(self.tail)
        self.position = 0

    def _byte_range(self, start: int, end: int) -> bytes:
        out = bytearray()
        head, body_end = len(self.head), len(self.head) + self.file_bytes
        if start < head:
            out += self.head[start : min(end, head)]
        if end > head and start < body_end:
            out += b"z" * (min(end, body_end) - max(start, head))
        if end > body_end:
            out += self.tail[max(start, body_end) - body_end : end - body_end]
        return bytes(out)

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        data = self._byte_range(self.position, end)
        self.position = end
        return data

    def readline(self, size: int | None = -1) -> bytes:  # not used by the multipart parser
        return self.read(size)


def streamed_post(client, url: str, body: CountingBody):
    """POST ``body`` as the WSGI input stream itself, so the test sees how much of it the server read."""
    content_type = "multipart/form-data; boundary=B0UNDARY"
    environ = {"wsgi.input": body, "CONTENT_LENGTH": str(body.size), "CONTENT_TYPE": content_type}
    return client.generic("POST", url, b"", content_type=content_type, **environ)


@pytest.mark.parametrize(
    ("url", "api"), [("/api/v1/models", True), ("/api/v1/datasets", True), ("/models/upload/", False)]
)
def test_upload_over_the_cap_is_refused_while_streaming(owner, settings, data_dir, url, api):
    """Declared just under cap + 1 MiB: the handler counts bytes and stops at the cap, not at the end."""
    settings.INFEROPT_UPLOAD_MAX_BYTES = 256 * 1024
    body = CountingBody("B0UNDARY", file_bytes=256 * 1024 + 900 * 1024)
    client = api_client_for(owner) if api else client_for(owner)
    response = streamed_post(client, url, body)
    assert response.status_code == (413 if api else 400)
    assert "larger than the limit" in response.content.decode()
    # Reading stopped within a chunk or two of the cap; the rest of the body was never read.
    assert body.position < settings.INFEROPT_UPLOAD_MAX_BYTES + 256 * 1024 < body.size
    assert files_under(data_dir) == []


def test_huge_declared_upload_is_refused_before_its_file_is_read(owner, settings, data_dir):
    settings.INFEROPT_UPLOAD_MAX_BYTES = 64 * 1024
    body = CountingBody("B0UNDARY", file_bytes=50 * 1024**2)
    response = streamed_post(api_client_for(owner), "/api/v1/models", body)
    assert response.status_code == 413
    assert body.position < 256 * 1024  # the form fields before the file, not the 50 MiB
    assert files_under(data_dir) == []
