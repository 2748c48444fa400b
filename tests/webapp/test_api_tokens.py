"""API tokens: stored only as a hash, shown once, revocable by their owner (and only by them)."""

from __future__ import annotations

import hashlib

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from tests.webapp.helpers import client_for
from webapp.accounts.models import ApiToken

pytestmark = pytest.mark.django_db


def test_only_the_hash_of_a_token_is_stored(owner):
    token, key = ApiToken.issue(owner, "ci")
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert key not in stored and key[8:] not in stored
    assert token.prefix == key[:8]


def test_the_command_prints_a_working_token_once(capsys, db):
    call_command("api_token", "ci-bot")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert ApiToken.objects.get().key_hash == hashlib.sha256(key.encode()).hexdigest()


def test_create_and_revoke_a_token_from_the_page(owner, client, finished_job):
    page = client_for(owner)
    response = page.post(reverse("accounts:tokens"), {"name": "laptop"})
    assert response.status_code == 200
    key = response.context["new_key"]
    assert key in response.content.decode()
    assert key not in page.get(reverse("accounts:tokens")).content.decode()  # shown once

    assert client.get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200
    assert (
        client.get(reverse("jobs:report_json", args=[finished_job.pk]), HTTP_AUTHORIZATION=f"Bearer {key}").status_code
        == 200
    )
    token = ApiToken.objects.get(name="laptop")
    assert page.post(reverse("accounts:token_revoke", args=[token.pk])).status_code == 302
    assert client.get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401
    # Downloads accept bearer tokens as well: refused there too.
    report = reverse("jobs:report_json", args=[finished_job.pk])
    assert client.get(report, HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401


def test_someone_elses_token_cannot_be_revoked_or_seen(owner, teammate):
    token, _ = ApiToken.issue(owner, "alice's")
    page = client_for(teammate)
    assert "alice&#x27;s" not in page.get(reverse("accounts:tokens")).content.decode()
    assert page.post(reverse("accounts:token_revoke", args=[token.pk])).status_code == 404
    token.refresh_from_db()
    assert not token.revoked


def test_revoke_needs_post(owner):
    token, _ = ApiToken.issue(owner, "x")
    assert client_for(owner).get(reverse("accounts:token_revoke", args=[token.pk])).status_code == 405
