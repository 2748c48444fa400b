"""Access rules checked for every URL pattern, found by walking the URL conf.

A new view is covered without touching this file, and one whose URL names an
object this file does not know fails ``test_every_object_parameter_is_known``
until it is added to ``OBJECT_COLLECTIONS``:

* anonymous users are sent to the login page (pages) or get 401/403 (API);
* an outsider gets 404 for every URL naming another team's object (job,
  artifact, model, team, membership, price row, API token) — GET or POST;
* every POST without a CSRF token is refused with 403 (session clients);
* every download is an attachment of a safe type with ``nosniff``.
The admin is staff-only (its own login).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.webapp.helpers import client_for
from webapp.accounts.models import ApiToken, Membership
from webapp.catalog.models import ModelEntry
from webapp.costs.models import InstanceType
from webapp.jobs.models import Artifact

pytestmark = pytest.mark.django_db

#: The collection word before ``<int:pk>`` in a route → which fixture object fills it.
OBJECT_COLLECTIONS = {
    "jobs": "job",
    "models": "model",
    "teams": "team",
    "instances": "instance",
    "tokens": "token",
}
#: Other URL parameters → object.
OBJECT_PARAMETERS = {"artifact_id": "artifact", "membership_id": "membership"}
#: Reachable without logging in (the login page itself; logout only ends a session; "" redirects to jobs).
PUBLIC = {"login", "logout", "home"}
#: Attachment types that no browser renders as a document (never text/html or image/svg+xml).
SAFE_DOWNLOAD_TYPES = {"application/zip", "application/octet-stream", "application/json", "text/markdown"}
_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


@dataclass(frozen=True)
class Route:
    route: str
    name: str
    parameters: tuple[str, ...]

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")


def walk(patterns, prefix: str = "", namespaces: tuple[str, ...] = ()) -> Iterator[Route]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            namespace = (pattern.namespace,) if pattern.namespace else ()
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), namespaces + namespace)
        elif isinstance(pattern, URLPattern):
            route = prefix + str(pattern.pattern)
            name = ":".join((*namespaces, pattern.name or ""))
            yield Route(route, name, tuple(_PARAMETER.findall(route)))


def project_routes() -> list[Route]:
    return [route for route in walk(get_resolver().url_patterns) if not route.route.startswith("admin/")]


def object_kind(route: Route, parameter: str) -> str | None:
    if parameter in OBJECT_PARAMETERS:
        return OBJECT_PARAMETERS[parameter]
    before = route.route.split(f"<int:{parameter}>")[0].rstrip("/").split("/")[-1]
    return OBJECT_COLLECTIONS.get(before)


@pytest.fixture
def acme_objects(finished_job, team, owner):
    """One object of each kind, all belonging to team acme (owner's team)."""
    model = ModelEntry.objects.create(team=team, name="private", reference="/nowhere", task="feature-extraction",
                                      source="upload", created_by=owner)  # fmt: skip
    instance = InstanceType.objects.create(team=team, name="acme box", hourly_price="1.00", device="cpu",
                                           price_date=datetime.date(2025, 1, 1))  # fmt: skip
    token, _ = ApiToken.issue(owner, "acme token")
    return {
        "job": finished_job,
        "artifact": finished_job.artifacts.last(),
        "model": model,
        "team": team,
        "membership": Membership.objects.get(user=owner, team=team),
        "instance": instance,
        "token": token,
    }


def url_for(route: Route, objects) -> str:
    kwargs = {parameter: objects[object_kind(route, parameter)].pk for parameter in route.parameters}
    url = reverse(route.name, kwargs=kwargs)
    return url + ("?purpose=inspect" if route.name == "jobs:artifact_download" else "")


def test_every_object_parameter_is_known():
    unknown = [
        f"{route.route} ({parameter})"
        for route in project_routes()
        for parameter in route.parameters
        if object_kind(route, parameter) is None
    ]
    assert unknown == [], "add these URL parameters to OBJECT_COLLECTIONS / OBJECT_PARAMETERS"
    assert len(project_routes()) > 30


def _get_or_post(client: Client, url: str):
    response = client.get(url)
    return client.post(url) if response.status_code == 405 else response


def test_anonymous_users_must_log_in_everywhere(client, acme_objects):
    checked = 0
    for route in project_routes():
        if route.name in PUBLIC:
            continue
        url = url_for(route, acme_objects)
        response = _get_or_post(client, url)
        redirected_to_login = response.status_code == 302 and response["Location"].startswith("/accounts/login/")
        if route.is_api and not redirected_to_login:  # api/v1/docs/ is a page; the rest answer 401
            assert response.status_code in (401, 403), (url, response.status_code)
        else:
            assert redirected_to_login, (url, response.status_code, response.get("Location"))
        checked += 1
    assert checked > 30


def test_home_only_redirects_to_a_login_protected_page(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("jobs:list")


def test_outsider_gets_404_for_every_url_naming_another_teams_object(outsider, owner, acme_objects):
    owner_client, outsider_client = client_for(owner), client_for(outsider)
    outsider_api = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(outsider, 'o')[1]}")
    checked = []
    for route in project_routes():
        if not route.parameters:
            continue
        url = url_for(route, acme_objects)
        # The objects are real: their owner is not turned away with a 404 (405 for POST-only views is fine).
        assert owner_client.get(url).status_code != 404, url
        clients = [outsider_client, outsider_api] if route.is_api or "download" in route.name else [outsider_client]
        for client in clients:
            get, post = client.get(url), client.post(url)
            assert get.status_code in (404, 405) and post.status_code in (404, 405), (url, get.status_code,
                                                                                     post.status_code)  # fmt: skip
            assert 404 in (get.status_code, post.status_code), url
        checked.append(route.name)
    assert {"jobs:detail", "jobs:artifact_download", "catalog:model_detail", "api:model", "accounts:member_remove",
            "costs:instance_edit", "accounts:token_revoke", "costs:card_md"} <= set(checked)  # fmt: skip
    # Nothing was changed by the outsider's POSTs.
    assert Membership.objects.filter(pk=acme_objects["membership"].pk).exists()
    assert not ApiToken.objects.get(pk=acme_objects["token"].pk).revoked


def test_every_post_without_a_csrf_token_is_403(owner, acme_objects):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    refused = []
    for route in project_routes():
        url = url_for(route, acme_objects)
        response = client.post(url, {"name": "x"})
        assert response.status_code == 403, (url, response.status_code)
        refused.append(route.name)
    assert "login" in refused and "catalog:model_upload" in refused and "api:jobs" in refused
    # With the token from the cookie, the same client gets through (the 403s above were CSRF).
    client.get(reverse("accounts:tokens"))
    response = client.post(
        reverse("accounts:tokens"), {"name": "x", "csrfmiddlewaretoken": client.cookies["csrftoken"].value}
    )
    assert response.status_code == 200


def test_bearer_token_api_posts_need_no_csrf_token(owner):
    _, key = ApiToken.issue(owner, "ci")
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.post("/api/v1/jobs", data={"model": "zoo:minilm", "steps": []}, content_type="application/json")
    assert response.status_code != 403


def test_admin_is_staff_only(outsider, client):
    for url in (reverse("admin:index"), reverse("admin:jobs_job_changelist")):
        assert client.get(url).status_code == 302
        response = client_for(outsider).get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url


def test_every_download_is_a_safe_attachment_and_pages_are_not_sniffable(owner, acme_objects):
    client = client_for(owner)
    downloads = []
    for route in project_routes():
        response = client.get(url_for(route, acme_objects))
        if response.status_code != 200:
            continue
        assert response["X-Content-Type-Options"] == "nosniff", route.route
        content_type = response["Content-Type"].split(";")[0].strip()
        if content_type == "application/vnd.oai.openapi":
            continue  # drf-spectacular's schema (YAML, no user content); no browser renders this type
        if response.has_header("Content-Disposition"):
            assert response["Content-Disposition"].startswith("attachment;"), route.route
            assert content_type in SAFE_DOWNLOAD_TYPES, (route.route, content_type)
            downloads.append(route.name)
        else:
            assert content_type in ("text/html", "application/json"), route.route
    assert {"jobs:artifact_download", "jobs:report_json", "costs:card_md"} <= set(downloads)


@pytest.mark.parametrize(
    ("stored_name", "content"),
    [
        ("evil.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.cookie)"/>'),
        ("evil.html", b"<!doctype html><script>fetch('/api/v1/jobs')</script>"),
    ],
)
def test_html_or_svg_disguised_as_an_artifact_downloads_as_a_zip_attachment(owner, finished_job, stored_name, content):
    artifact = Artifact(job=finished_job, name="evil<script>", format="onnx", order=9, sha256="0" * 64)
    artifact.file.save(stored_name, ContentFile(content), save=False)
    artifact.save()
    url = reverse("jobs:artifact_download", args=[finished_job.pk, artifact.pk]) + "?purpose=inspect"
    response = client_for(owner).get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["X-Content-Type-Options"] == "nosniff"
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;") and "<" not in disposition and ".zip" in disposition
