"""REST API for the catalogue (models, datasets, passes), the schema and the docs page."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.webapp.helpers import api_client_for, client_for, json_body
from webapp.catalog.models import Dataset

pytestmark = pytest.mark.django_db


def test_passes_lists_every_registered_pass_with_its_schema(owner):
    body = json_body(api_client_for(owner).get("/api/v1/passes"))
    by_name = {entry["name"]: entry for entry in body}
    assert {"onnx_export", "ort_optimize", "ort_quantize_dynamic", "torch_quantize_dynamic"} <= set(by_name)
    export = by_name["onnx_export"]
    assert export["input_formats"] == ["hf", "torch"] and export["output_format"] == "onnx"
    assert export["config_schema"]["properties"]["opset"]["minimum"] == 17


def test_models_list_has_the_demo_with_its_recipe_reference(owner):
    body = json_body(api_client_for(owner).get("/api/v1/models"))
    demo = next(row for row in body if row["ref"] == "zoo:minilm")
    assert demo["team"] is None and demo["format"] == "hf" and demo["source"] == "zoo"


def test_dataset_upload_and_list(owner, team):
    client = api_client_for(owner)
    content = b'{"query": "how to sort", "passage": "use sorted()"}\n{"query": "q2", "passage": "p2"}\n'
    response = client.post("/api/v1/datasets", {"name": "pairs", "file": SimpleUploadedFile("d.jsonl", content)})
    assert response.status_code == 201, response.content
    body = json_body(response)
    assert (body["rows"], body["schema"], body["ref"]) == (2, "pairs", f"dataset:{body['id']}")
    dataset = Dataset.objects.get(pk=body["id"])
    assert dataset.file.name.startswith("datasets/") and dataset.file.name.endswith(".jsonl")
    assert dataset.file.read() == content
    assert [row["id"] for row in json_body(client.get("/api/v1/datasets"))] == [dataset.pk]


def test_bad_dataset_is_400_with_the_line(owner, team, data_dir):
    response = api_client_for(owner).post(
        "/api/v1/datasets", {"name": "bad", "file": SimpleUploadedFile("d.jsonl", b'{"text": "ok"}\n{"nope": 1}\n')}
    )
    assert response.status_code == 400
    assert "line 2" in json_body(response)["error"]
    assert not Dataset.objects.exists()
    assert not list((data_dir / "media").rglob("*.jsonl"))


def test_dataset_upload_through_the_web_form(owner, team):
    response = client_for(owner).post(
        reverse("catalog:dataset_upload"),
        {"team": team.pk, "name": "texts", "file": SimpleUploadedFile("t.jsonl", b'{"text": "hello"}\n')},
    )
    assert response.status_code == 302
    page = client_for(owner).get(reverse("catalog:model_list")).content.decode()
    assert "texts" in page


def test_openapi_schema_describes_the_api(owner):
    response = api_client_for(owner).get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = json_body(response)
    for path in ("/api/v1/jobs", "/api/v1/jobs/{id}", "/api/v1/jobs/{id}/cancel", "/api/v1/models", "/api/v1/passes"):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_docs_page_lists_the_endpoints(owner):
    page = client_for(owner).get(reverse("api:docs")).content.decode()
    assert "/api/v1/jobs" in page and "Submit a recipe" in page and "Bearer" in page
