"""Management commands: api_token, ensure_admin, setup_demo."""

from __future__ import annotations

import io
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from webapp.accounts.models import ApiToken, Membership
from webapp.catalog.models import ModelEntry

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_api_token_last_line_is_a_working_bearer_token():
    output = run("api_token", "ci-bot")
    key = output.strip().splitlines()[-1]
    user = get_user_model().objects.get(username="ci-bot")
    assert not user.has_usable_password()
    membership = Membership.objects.get(user=user)
    assert (membership.team.name, membership.role) == ("default", "member")
    response = Client().get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    token = ApiToken.objects.get(user=user)
    assert token.last_used_at is not None
    assert key not in (token.key_hash, token.prefix) and token.prefix == key[:8]


def test_api_token_for_an_existing_user_keeps_the_password_and_sets_team_and_role(django_user_model):
    user = django_user_model.objects.create_user("dana", password="secret-pw-123")
    key = run("api_token", "dana", "--team", "ml", "--role", "reviewer").strip().splitlines()[-1]
    user.refresh_from_db()
    assert user.check_password("secret-pw-123")
    assert Membership.objects.get(user=user, team__name="ml").role == "reviewer"
    second = run("api_token", "dana", "--team", "ml", "--role", "reviewer").strip().splitlines()[-1]
    assert key != second
    assert ApiToken.objects.filter(user=user).count() == 2


def test_ensure_admin_creates_once_and_writes_private_credentials(tmp_path):
    path = tmp_path / "creds" / "admin-credentials"
    first = run("ensure_admin", "--credentials-file", str(path))
    username, password = path.read_text().strip().split(":", 1)
    assert username == "admin" and password in first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert Membership.objects.get(user=admin, team__name="default").role == "admin"
    again = run("ensure_admin", "--credentials-file", str(path))
    assert again.strip() == f"admin exists; credentials in {path}"
    assert path.read_text().strip() == f"admin:{password}"


def test_setup_demo_is_idempotent():
    run("setup_demo")
    output = run("setup_demo")
    assert "zoo:minilm" in output
    entry = ModelEntry.objects.get(reference="zoo:minilm")
    assert (entry.name, entry.team, entry.format, entry.task) == ("MiniLM-L6 (demo)", None, "hf", "feature-extraction")
    assert len(entry.sha256) == 64 and entry.size_bytes > 10_000_000


def test_setup_demo_lists_the_digits_cnn_as_a_torch_image_classifier():
    run("setup_demo")
    entry = ModelEntry.objects.get(reference="zoo:digits-cnn")
    assert (entry.team, entry.format, entry.task) == (None, "torch", "image-classification")
    assert len(entry.sha256) == 64 and entry.size_bytes > 100_000
