"""Sign-in attempts are limited per username and address: a burst of failures locks the pair out."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.INFEROPT_LOGIN_MAX_FAILURES = 3
    settings.INFEROPT_LOGIN_WINDOW_S = 600
    cache.clear()
    yield
    cache.clear()


def login(password: str, username: str = "alice", address: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=address).post(reverse("login"), {"username": username, "password": password})


def test_failures_below_the_limit_show_the_normal_error(owner):
    for _ in range(2):
        response = login("wrong")
        assert response.status_code == 200
        assert "didn" in response.content.decode()  # "didn't match"
    assert login("pw-alice").status_code == 302


def test_too_many_failures_lock_out_even_the_right_password(owner):
    for _ in range(3):
        assert login("wrong").status_code == 200
    response = login("pw-alice")
    assert response.status_code == 429
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert 0 < int(response["Retry-After"]) <= 600
    assert "_auth_user_id" not in response.client.session


def test_the_lockout_covers_every_login_path(owner, django_user_model):
    """The admin login calls authenticate() too: the backend refuses the locked pair there as well."""
    owner.is_staff = True
    owner.save()
    for _ in range(3):
        login("wrong")
    client = Client(REMOTE_ADDR="10.0.0.1")
    response = client.post(reverse("admin:login"), {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 200  # the admin form redisplayed: not logged in
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_per_username_and_address(owner, teammate):
    for _ in range(3):
        login("wrong")
    assert login("pw-alice", address="10.0.0.2").status_code == 302  # same user, other address
    assert login("pw-bob", username="bob").status_code == 302  # other user, same address
    assert login("pw-alice", username="ALICE ").status_code == 429  # case and spaces do not reset it


def test_the_lockout_ends_with_its_window(owner, settings):
    for _ in range(3):
        login("wrong")
    assert login("pw-alice").status_code == 429
    cache.clear()  # what the window's expiry does
    assert login("pw-alice").status_code == 302


def test_a_successful_login_resets_the_count(owner):
    login("wrong")
    login("wrong")
    assert login("pw-alice").status_code == 302
    login("wrong")
    login("wrong")
    assert login("pw-alice").status_code == 302
