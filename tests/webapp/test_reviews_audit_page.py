"""The team audit page: the teams' entries, newest first, filterable by team, action, user and job."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.webapp.helpers import client_for
from webapp.accounts.models import Membership
from webapp.reviews.models import AuditEntry
from webapp.reviews.services import record

pytestmark = pytest.mark.django_db

Action = AuditEntry.Action


@pytest.fixture
def entries(finished_job, make_job, team, other_team, owner, teammate, outsider):
    second = make_job(team, teammate, name="second")
    foreign = make_job(other_team, outsider, name="foreign")
    return {
        "gate": record(Action.GATE_OUTCOME, job=finished_job, details={"outcome": "needs_approval"}),
        "owner_download": record(Action.DOWNLOAD, job=finished_job, actor=owner, details={"purpose": "inspect"}),
        "teammate_download": record(Action.DOWNLOAD, job=second, actor=teammate, details={"purpose": "deploy"}),
        "foreign": record(Action.DOWNLOAD, job=foreign, actor=outsider, details={"purpose": "deploy"}),
    }


def listed(viewer, filters: dict | None = None) -> list[int]:
    response = client_for(viewer).get(reverse("reviews:audit"), filters or {})
    assert response.status_code == 200
    return [entry.pk for entry in response.context["entries"]]


def test_the_team_log_is_newest_first_and_only_the_users_teams(entries, owner):
    assert listed(owner) == [entries[key].pk for key in ("teammate_download", "owner_download", "gate")]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"action": "download"}, ["teammate_download", "owner_download"]),
        ({"action": "gate_outcome"}, ["gate"]),
        ({"user": "bob"}, ["teammate_download"]),
        ({"user": "charlie"}, []),
        ({"action": "download", "user": "alice"}, ["owner_download"]),
    ],
)
def test_filters(entries, owner, filters, expected):
    assert listed(owner, filters) == [entries[key].pk for key in expected]


def test_filter_by_job(entries, owner, finished_job):
    assert listed(owner, {"job": finished_job.pk}) == [entries["owner_download"].pk, entries["gate"].pk]
    assert listed(owner, {"job": entries["foreign"].job_id}) == []


def test_filter_by_team_for_members_of_several(entries, owner, other_team):
    Membership.objects.create(user=owner, team=other_team)
    assert entries["foreign"].pk in listed(owner)
    assert listed(owner, {"team": "globex"}) == [entries["foreign"].pk]
    page = client_for(owner).get(reverse("reviews:audit"), {"team": "globex"}).content.decode()
    assert "<th>Team</th>" in page


def test_outsider_sees_only_their_team(entries, outsider):
    assert listed(outsider) == [entries["foreign"].pk]
    assert listed(outsider, {"team": "acme"}) == [entries["foreign"].pk], "an unknown team is ignored, not revealed"


def test_the_page_shows_who_what_and_details(entries, owner):
    page = client_for(owner).get(reverse("reviews:audit")).content.decode()
    assert 'class="audit-download"' in page and "purpose: inspect" in page and "system" in page


def test_anonymous_goes_to_login(client):
    response = client.get(reverse("reviews:audit"))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
