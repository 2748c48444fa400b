"""Model uploads through the API and the web form: hostile zips are refused, a real HF model is accepted."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from optimizers.hashing import sha256_path
from tests.webapp.helpers import (
    TINY_CONFIG,
    api_client_for,
    client_for,
    files_under,
    json_body,
    model_zip,
    safetensors_bytes,
)
from webapp.catalog.models import ModelEntry
from webapp.catalog.storage import StoredInput

pytestmark = pytest.mark.django_db

CONFIG = json.dumps(TINY_CONFIG).encode()


@pytest.fixture(scope="module")
def tiny_bert_zip(tmp_path_factory) -> bytes:
    """A real (randomly initialised) tiny BERT saved by transformers, zipped as its folder."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert") / "tiny-bert"
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, f"tiny-bert/{file.relative_to(folder)}")
    return buffer.getvalue()


def upload(client, content: bytes, name: str = "my model", filename: str = "model.zip"):
    return client.post("/api/v1/models", {"name": name, "file": SimpleUploadedFile(filename, content)})


HOSTILE = {
    "not a zip": (b"PK? no, just text", "not a zip archive"),
    "no config.json": (model_zip({"model.safetensors": safetensors_bytes()}), "config.json is missing"),
    "parent traversal": (model_zip(**{"../evil.txt": b"x"}), "path traversal"),
    "absolute path": (model_zip(**{"/tmp/evil.txt": b"x"}), "absolute path"),
    "symlink": (model_zip(modes={"link": stat.S_IFLNK | 0o777}, link=b"/etc/passwd"), "symbolic link"),
    "pickle only": (model_zip({"config.json": CONFIG, "pytorch_model.bin": b"\x80\x04."}), "pickle"),
    "auto_map": (
        model_zip(**{"config.json": json.dumps({**TINY_CONFIG, "auto_map": {"AutoModel": "m.M"}}).encode()}),
        "trust_remote_code",
    ),
    "zip bomb": (model_zip(**{"padding.txt": b"\0" * (20 * 1024**2)}), "zip bomb"),
    "bad safetensors header": (model_zip(**{"model.safetensors": b"\xff" * 8 + b"{}"}), "safetensors header"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_upload_is_400_with_the_reason_and_leaves_nothing(case, owner, data_dir, tmp_path):
    content, reason = HOSTILE[case]
    response = upload(api_client_for(owner), content)
    assert response.status_code == 400, response.content
    assert reason in json_body(response)["error"]
    assert files_under(data_dir) == []
    assert not ModelEntry.objects.filter(source="upload").exists()
    assert not list(tmp_path.rglob("evil.txt")) and not Path("/tmp/evil.txt").exists()


def test_hostile_upload_through_the_web_form_shows_the_reason(owner, team, data_dir):
    content, reason = HOSTILE["pickle only"]
    response = client_for(owner).post(
        reverse("catalog:model_upload"),
        {"team": team.pk, "name": "bad", "file": SimpleUploadedFile("model.zip", content)},
    )
    assert response.status_code == 400
    assert reason in response.content.decode()
    assert files_under(data_dir) == []


def test_real_hf_model_upload_is_201(owner, team, data_dir, tiny_bert_zip, settings):
    response = upload(api_client_for(owner), tiny_bert_zip, name="tiny bert")
    assert response.status_code == 201, response.content
    body = json_body(response)
    entry = ModelEntry.objects.get(pk=body["id"])
    assert body["ref"] == f"model:{entry.pk}"
    assert (entry.team, entry.name, entry.format, entry.task, entry.source) == (
        team, "tiny bert", "hf", "feature-extraction", "upload"
    )  # fmt: skip
    # Stored as a zip through the storage API, named by a storage reference; the checked folder is this
    # host's cached copy (workers fetch their own through the storage API).
    stored = StoredInput.parse(entry.reference)
    assert stored.name == entry.archive.name and stored.sha256 == entry.archive_sha256
    assert Path(stored.name).parent.parent.as_posix() == "models" and Path(stored.name).name == "model.zip"
    folder = data_dir / "inputs" / stored.sha256 / "model"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert entry.sha256 == sha256_path(folder) == body["sha256"]
    assert entry.size_bytes == body["size_bytes"] > 0
    # Only the archive and the cached folder were written (the temporary upload is gone).
    assert files_under(data_dir) == sorted(
        [f"media/{stored.name}", *(f"inputs/{stored.sha256}/model/{p.name}" for p in folder.iterdir())]
    )


def test_uploaded_model_can_be_optimized(owner, tiny_bert_zip):
    client = api_client_for(owner)
    model_id = json_body(upload(client, tiny_bert_zip))["id"]
    recipe = {"model": f"model:{model_id}", "steps": [{"pass": "onnx_export"}]}
    response = client.post("/api/v1/jobs", data=json.dumps(recipe), content_type="application/json")
    assert response.status_code == 201, response.content


def test_real_hf_model_upload_through_the_web_form(owner, team, tiny_bert_zip):
    response = client_for(owner).post(
        reverse("catalog:model_upload"),
        {"team": team.pk, "name": "web bert", "file": SimpleUploadedFile("bert.zip", tiny_bert_zip)},
    )
    entry = ModelEntry.objects.get(name="web bert")
    assert response.status_code == 302
    assert response["Location"] == reverse("catalog:model_detail", args=[entry.pk])
    page = client_for(owner).get(reverse("catalog:model_list")).content.decode()
    assert "web bert" in page and entry.sha256[:12] in page


def test_upload_over_the_size_limit_is_refused_while_streaming(owner, team, settings, data_dir):
    settings.INFEROPT_UPLOAD_MAX_BYTES = 1000
    response = upload(api_client_for(owner), model_zip(**{"notes.bin.txt": os.urandom(5000)}))
    assert response.status_code == 413
    assert "larger than the limit" in json_body(response)["error"]
    web = client_for(owner).post(
        reverse("catalog:model_upload"),
        {"team": team.pk, "name": "big", "file": SimpleUploadedFile("m.zip", b"x" * 5000)},
    )
    assert web.status_code == 400
    assert "larger than the limit" in web.content.decode()
    assert files_under(data_dir) == []


def test_upload_with_a_huge_declared_length_is_refused_before_reading(owner, settings, data_dir):
    settings.INFEROPT_UPLOAD_MAX_BYTES = 10
    response = upload(api_client_for(owner), b"x" * (2 * 1024**2))
    assert response.status_code == 413
    assert files_under(data_dir) == []


def test_upload_needs_a_name_and_a_file(owner):
    response = api_client_for(owner).post("/api/v1/models", {"name": "no file"})
    assert response.status_code == 400
    assert "file" in json_body(response)["error"]


def test_upload_into_a_team_you_are_not_in_is_400(owner, other_team):
    response = api_client_for(owner).post(
        "/api/v1/models?team=globex", {"name": "x", "file": SimpleUploadedFile("m.zip", model_zip())}
    )
    assert response.status_code == 400
    assert "not a member" in json_body(response)["error"]
