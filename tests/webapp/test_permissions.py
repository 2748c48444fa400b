"""Who sees what: teammates share everything, outsiders get 404, anonymous users log in."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.webapp.helpers import api_client_for, client_for, json_body
from webapp.catalog.models import ModelEntry

pytestmark = pytest.mark.django_db


def page_urls(job, artifact) -> list[str]:
    return [
        reverse("jobs:detail", args=[job.pk]),
        reverse("jobs:status", args=[job.pk]),
        reverse("jobs:report_json", args=[job.pk]),
        reverse("jobs:artifact_download", args=[job.pk, artifact.pk]) + "?purpose=inspect",
    ]


def test_teammate_sees_the_owners_job_and_downloads(finished_job, teammate):
    client = client_for(teammate)
    for url in page_urls(finished_job, finished_job.artifacts.first()):
        assert client.get(url).status_code == 200, url


def test_outsider_gets_404_for_job_pages_and_downloads(finished_job, outsider):
    client = client_for(outsider)
    for url in page_urls(finished_job, finished_job.artifacts.first()):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("jobs:cancel", args=[finished_job.pk])).status_code == 404


def test_outsider_does_not_see_the_job_in_lists(finished_job, outsider):
    assert finished_job.name not in client_for(outsider).get(reverse("jobs:list")).content.decode()
    assert json_body(api_client_for(outsider).get("/api/v1/jobs")) == []


def test_artifact_of_another_job_is_404_even_for_a_member(finished_job, make_job, team, owner, other_team):
    foreign = make_job(other_team)
    artifact = finished_job.artifacts.first()
    url = reverse("jobs:artifact_download", args=[foreign.pk, artifact.pk])
    assert client_for(owner).get(url).status_code == 404


def test_outsider_gets_404_for_a_team_model(team, owner, outsider):
    entry = ModelEntry.objects.create(team=team, name="private", reference="/x", task="feature-extraction",
                                      source="upload")  # fmt: skip
    assert client_for(owner).get(reverse("catalog:model_detail", args=[entry.pk])).status_code == 200
    assert client_for(outsider).get(reverse("catalog:model_detail", args=[entry.pk])).status_code == 404
    assert api_client_for(outsider).get(f"/api/v1/models/{entry.pk}").status_code == 404
    listed = [row["id"] for row in json_body(api_client_for(outsider).get("/api/v1/models"))]
    assert entry.pk not in listed


def test_builtin_demo_model_is_visible_to_everyone(demo_model, outsider):
    assert client_for(outsider).get(reverse("catalog:model_detail", args=[demo_model.pk])).status_code == 200
    refs = [row["ref"] for row in json_body(api_client_for(outsider).get("/api/v1/models"))]
    assert "zoo:minilm" in refs


def test_outsider_api_job_detail_and_cancel_are_404(finished_job, outsider):
    client = api_client_for(outsider)
    assert client.get(f"/api/v1/jobs/{finished_job.pk}").status_code == 404
    assert client.post(f"/api/v1/jobs/{finished_job.pk}/cancel").status_code == 404


@pytest.mark.parametrize(
    "name",
    ["jobs:list", "jobs:new", "catalog:model_list", "catalog:model_upload", "catalog:dataset_upload", "api:docs"],
)
def test_anonymous_pages_redirect_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_anonymous_job_pages_and_downloads_redirect_to_login(client, finished_job):
    for url in page_urls(finished_job, finished_job.artifacts.first()):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/v1/jobs"),
        ("post", "/api/v1/jobs"),
        ("get", "/api/v1/jobs/1"),
        ("post", "/api/v1/jobs/1/cancel"),
        ("get", "/api/v1/models"),
        ("post", "/api/v1/models"),
        ("get", "/api/v1/passes"),
        ("get", "/api/v1/datasets"),
        ("get", "/api/v1/schema/"),
    ],
)
def test_anonymous_api_gets_401(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    if "schema" not in url:  # the schema endpoint answers in YAML
        assert "error" in json_body(response)


def test_invalid_or_revoked_token_gets_401(client, owner):
    assert client.get("/api/v1/jobs", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    api = api_client_for(owner)
    assert api.get("/api/v1/jobs").status_code == 200
    owner.api_tokens.update(revoked=True)
    assert api.get("/api/v1/jobs").status_code == 401


def test_download_with_invalid_token_is_401(client, finished_job):
    url = reverse("jobs:report_json", args=[finished_job.pk])
    assert client.get(url, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_download_with_outsiders_token_is_404(finished_job, outsider):
    url = reverse("jobs:artifact_download", args=[finished_job.pk, finished_job.artifacts.first().pk])
    assert api_client_for(outsider).get(url).status_code == 404
