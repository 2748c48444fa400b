"""The review queue page: the teams' jobs awaiting review, oldest first, gate table inline."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.webapp.helpers import client_for, sample_report
from webapp.jobs.models import Job
from webapp.reviews.services import review_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def gated(make_job, team, owner):
    """Three succeeded jobs awaiting review, finished one, two and three hours ago."""

    def make(name: str, hours_ago: int, outcome: str = "needs_approval", job_team=None) -> Job:
        return make_job(
            job_team or team, owner, name=name, status="succeeded", report=sample_report(), gate_outcome=outcome,
            finished_at=timezone.now() - dt.timedelta(hours=hours_ago),
        )  # fmt: skip

    return make


def queue_ids(user) -> list[int]:
    response = client_for(user).get(reverse("reviews:queue"))
    assert response.status_code == 200
    return [int(job_id) for job_id in response.context["page"].object_list.values_list("pk", flat=True)]


def test_queue_lists_awaiting_jobs_oldest_first_with_the_gate_table(gated, reviewer):
    newest, oldest, failed = gated("newest", 1), gated("oldest", 3), gated("failed", 2, "fail")
    assert queue_ids(reviewer) == [oldest.pk, failed.pk, newest.pk]
    page = client_for(reviewer).get(reverse("reviews:queue")).content.decode()
    assert page.count('class="table gate-table"') == 3
    assert "recall@1" in page and "absolute drop" in page and "recall@1 dropped by 0.01" in page
    assert f'href="/jobs/{oldest.pk}/#approval"' in page


def test_decided_passed_and_unfinished_jobs_are_not_in_the_queue(gated, make_job, team, reviewer, team_admin):
    approved, rejected = gated("approved", 1), gated("rejected", 1)
    review_job(reviewer, approved, "approve", "ok")
    review_job(team_admin, rejected, "reject", "no")
    gated("passed", 1, "pass")
    make_job(team, status="running")
    waiting = gated("waiting", 1)
    assert queue_ids(reviewer) == [waiting.pk]


def test_an_expired_approval_is_back_in_the_queue(gated, reviewer, monkeypatch):
    job = gated("expiring", 1)
    review = review_job(reviewer, job, "approve", "pilot", timezone.now() + dt.timedelta(minutes=5))
    assert queue_ids(reviewer) == []
    later = review.expires_at + dt.timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert queue_ids(reviewer) == [job.pk]
    assert "approval expired" in client_for(reviewer).get(reverse("reviews:queue")).content.decode()


def test_members_see_the_queue_but_the_submitter_is_told_four_eyes(gated, owner, teammate):
    job = gated("mine", 1)
    assert queue_ids(teammate) == [job.pk]
    page = client_for(owner).get(reverse("reviews:queue")).content.decode()
    assert "four-eyes" in page


def test_outsiders_do_not_see_other_teams_jobs(gated, outsider, other_team):
    gated("acme job", 1)
    theirs = gated("globex job", 1, job_team=other_team)
    assert queue_ids(outsider) == [theirs.pk]


def test_the_queue_is_linked_in_the_nav_and_needs_login(client, reviewer):
    assert f'href="{reverse("reviews:queue")}"' in client_for(reviewer).get(reverse("jobs:list")).content.decode()
    response = client.get(reverse("reviews:queue"))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
