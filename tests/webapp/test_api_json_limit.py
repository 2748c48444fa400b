"""JSON API bodies are capped while they are read: 413 over INFEROPT_API_MAX_JSON_BYTES, never a 500."""

from __future__ import annotations

import json

import pytest
from rest_framework.exceptions import ParseError

from tests.webapp.helpers import api_client_for, json_body
from webapp.jobs.models import Job
from webapp.parsers import LimitedJSONParser, RequestBodyTooLarge

pytestmark = pytest.mark.django_db

RECIPE = {"model": "zoo:minilm", "steps": [{"pass": "onnx_export"}]}
JSON_ENDPOINTS = ["/api/v1/jobs", "/api/v1/preflight"]


def oversized_recipe(size: int) -> bytes:
    """A valid JSON recipe of at least ``size`` bytes: only its size is wrong."""
    return json.dumps({**RECIPE, "name": "x" * size}).encode()


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_a_body_over_the_limit_is_refused_with_413_and_a_json_error(owner, demo_model, settings, path):
    settings.INFEROPT_API_MAX_JSON_BYTES = 64 * 1024
    body = oversized_recipe(1024**2)
    response = api_client_for(owner).post(path, data=body, content_type="application/json")
    assert response.status_code == 413, response.content
    assert response["Content-Type"].startswith("application/json")
    assert json_body(response) == {"error": "the JSON body is larger than the limit of 65536 bytes"}
    assert not Job.objects.exists()


def test_the_default_limit_refuses_a_2_mib_recipe(owner, demo_model):
    response = api_client_for(owner).post(
        "/api/v1/jobs", data=oversized_recipe(2 * 1024**2), content_type="application/json"
    )
    assert response.status_code == 413
    assert "1048576 bytes" in json_body(response)["error"]


def test_a_body_under_the_limit_is_accepted(owner, demo_model, settings):
    settings.INFEROPT_API_MAX_JSON_BYTES = 64 * 1024
    response = api_client_for(owner).post("/api/v1/jobs", data=json.dumps(RECIPE), content_type="application/json")
    assert response.status_code == 201, response.content


def test_a_body_over_djangos_memory_cap_is_a_400_with_a_clear_json_error(owner, demo_model):
    # Django reads JSON bodies for DRF and refuses them above DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB).
    response = api_client_for(owner).post(
        "/api/v1/jobs", data=oversized_recipe(3 * 1024**2), content_type="application/json"
    )
    assert response.status_code == 400
    assert json_body(response) == {
        "error": "the request body is larger than the limit of 2621440 bytes (send large content as a file upload)"
    }
    assert not Job.objects.exists()


def test_a_declared_2_gb_body_is_refused_before_any_byte_is_read(owner, demo_model):
    # The test client's input stream fails the test if more is read than it holds (2 bytes): a clean
    # refusal here means the declared Content-Length alone turned the (pretend) 2 GB away.
    response = api_client_for(owner).post(
        "/api/v1/jobs", data=b"{}", content_type="application/json", CONTENT_LENGTH=str(2 * 1024**3)
    )
    assert response.status_code in (400, 413)
    assert "larger than the limit" in json_body(response)["error"]
    assert not Job.objects.exists()


class UnreadableStream:
    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the parser read a body whose declared length is over the limit")


class DeclaredLength:
    """The part of a request the parser looks at: its declared length."""

    def __init__(self, length: int) -> None:
        self.META = {"CONTENT_LENGTH": str(length)}


def test_the_parser_refuses_a_declared_length_over_the_limit_without_reading(settings):
    settings.INFEROPT_API_MAX_JSON_BYTES = 1024
    with pytest.raises(RequestBodyTooLarge):
        LimitedJSONParser().parse(UnreadableStream(), "application/json", {"request": DeclaredLength(2 * 1024**3)})


class EndlessJSON:
    """A body with no declared length that never ends: counts what the parser reads."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "the parser must read in bounded chunks"
        self.read_bytes += size
        return b"[" * size


def test_the_limit_is_enforced_while_reading_a_stream_of_unknown_length(settings):
    settings.INFEROPT_API_MAX_JSON_BYTES = 100_000
    stream = EndlessJSON()
    with pytest.raises(RequestBodyTooLarge):
        LimitedJSONParser().parse(stream, "application/json", {})
    assert stream.read_bytes <= 100_000 + LimitedJSONParser.chunk_size


def test_deeply_nested_json_is_a_400_not_a_500(owner, demo_model):
    body = "[" * 200_000 + "]" * 200_000
    response = api_client_for(owner).post("/api/v1/jobs", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in json_body(response)["error"]


def test_malformed_json_is_still_a_400_with_the_parse_error(owner):
    response = api_client_for(owner).post("/api/v1/jobs", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert json_body(response)["error"].startswith("JSON parse error")


def test_an_invalid_content_length_is_a_parse_error():
    request = DeclaredLength(0)
    request.META["CONTENT_LENGTH"] = "lots"
    with pytest.raises(ParseError):
        LimitedJSONParser().parse(UnreadableStream(), "application/json", {"request": request})
