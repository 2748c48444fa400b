"""The price list: seeded global rows, team admins edit their team's rows, members cannot, outsiders 404."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from optimizers.cost import SEED_CATALOGUE
from tests.webapp.helpers import client_for
from webapp.accounts.models import Membership
from webapp.costs.models import InstanceType

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(django_user_model, team):
    user = django_user_model.objects.create_user("adele", password="pw-adele")
    Membership.objects.create(user=user, team=team, role=Membership.Role.ADMIN)
    return user


@pytest.fixture
def team_row(team):
    return InstanceType.objects.create(
        team=team, name="our-box", hourly_price=Decimal("0.25"), device="Intel Xeon Platinum 8488C", kind="cpu",
        price_date=datetime.date(2026, 11, 1), notes="negotiated",
    )  # fmt: skip


@pytest.fixture
def global_row():
    return InstanceType.objects.get(team=None, name="AWS c7i.xlarge")


def row_data(**changes):
    data = {"name": "new-box", "hourly_price": "0.50", "device": "NVIDIA L4", "kind": "gpu", "notes": "quote",
            "price_date": "2026-11-01"}  # fmt: skip
    return {**data, **changes}


def test_migration_seeds_the_global_catalogue_as_in_optimizers_cost():
    seeded = {row.name: row for row in InstanceType.objects.filter(team=None)}
    assert set(seeded) == {instance.name for instance in SEED_CATALOGUE}
    for instance in SEED_CATALOGUE:
        row = seeded[instance.name]
        assert row.as_instance() == instance, instance.name
        assert "check your provider" in row.notes


def test_everyone_sees_global_rows_and_only_their_teams_rows(team_row, owner, outsider):
    page = client_for(owner).get(reverse("costs:instance_list")).content.decode()
    assert "AWS g5.xlarge" in page and "our-box" in page and "approximate list price as of June 2024" in page
    assert "our-box" not in client_for(outsider).get(reverse("costs:instance_list")).content.decode()


def test_team_admin_adds_edits_and_deletes_team_rows(admin, team):
    client = client_for(admin)
    assert client.get(reverse("costs:instance_new")).status_code == 200
    response = client.post(reverse("costs:instance_new"), row_data(team=team.pk))
    assert response.status_code == 302
    row = InstanceType.objects.get(name="new-box")
    assert row.team == team and row.created_by == admin and row.hourly_price == Decimal("0.50")

    response = client.post(reverse("costs:instance_edit", args=[row.pk]), row_data(hourly_price="0.45", team=""))
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.hourly_price == Decimal("0.45") and row.team == team  # the team field cannot move a row

    assert client.post(reverse("costs:instance_delete", args=[row.pk])).status_code == 302
    assert not InstanceType.objects.filter(pk=row.pk).exists()


def test_member_cannot_add_edit_or_delete(owner, team, team_row):
    client = client_for(owner)
    assert client.get(reverse("costs:instance_new")).status_code == 403
    assert client.post(reverse("costs:instance_new"), row_data(team=team.pk)).status_code == 403
    assert client.get(reverse("costs:instance_edit", args=[team_row.pk])).status_code == 403
    assert client.post(reverse("costs:instance_edit", args=[team_row.pk]), row_data()).status_code == 403
    assert client.post(reverse("costs:instance_delete", args=[team_row.pk])).status_code == 403
    team_row.refresh_from_db()
    assert team_row.name == "our-box"
    assert "edit</a>" not in client.get(reverse("costs:instance_list")).content.decode()


def test_outsider_gets_404_for_another_teams_row(outsider, team_row):
    client = client_for(outsider)
    assert client.get(reverse("costs:instance_edit", args=[team_row.pk])).status_code == 404
    assert client.post(reverse("costs:instance_delete", args=[team_row.pk])).status_code == 404
    assert InstanceType.objects.filter(pk=team_row.pk).exists()


def test_team_admin_cannot_edit_global_rows_or_add_to_another_team(admin, global_row, other_team):
    client = client_for(admin)
    assert client.get(reverse("costs:instance_edit", args=[global_row.pk])).status_code == 403
    assert client.post(reverse("costs:instance_delete", args=[global_row.pk])).status_code == 403
    response = client.post(reverse("costs:instance_new"), row_data(team=other_team.pk))
    assert response.status_code == 400
    response = client.post(reverse("costs:instance_new"), row_data(team=""))  # global: staff only
    assert response.status_code == 400
    assert not InstanceType.objects.filter(name="new-box").exists()


def test_staff_edit_global_rows(django_user_model, global_row):
    staff = django_user_model.objects.create_user("sam", password="pw-sam", is_staff=True)
    client = client_for(staff)
    response = client.post(
        reverse("costs:instance_edit", args=[global_row.pk]),
        row_data(name=global_row.name, hourly_price="0.19", device=global_row.device, kind="cpu"),
    )
    assert response.status_code == 302
    global_row.refresh_from_db()
    assert global_row.hourly_price == Decimal("0.19") and global_row.team is None
    assert client.post(reverse("costs:instance_new"), row_data(team="")).status_code == 302
    assert InstanceType.objects.get(name="new-box").team is None


def test_names_are_unique_per_team_and_prices_not_negative(admin, team, team_row):
    client = client_for(admin)
    assert client.post(reverse("costs:instance_new"), row_data(team=team.pk, name="our-box")).status_code == 400
    assert client.post(reverse("costs:instance_new"), row_data(team=team.pk, hourly_price="-1")).status_code == 400


@pytest.mark.parametrize("name", ["costs:instance_list", "costs:instance_new"])
def test_anonymous_users_log_in_first(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("price, shown", [("0.1800", "0.18"), ("0.0525", "0.0525"), ("12", "12.00"), ("100", "100.00")])
def test_prices_are_shown_without_padding_zeros(price, shown):
    assert InstanceType(hourly_price=Decimal(price)).price_display == shown
