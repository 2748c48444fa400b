"""Team pages: members see their teams; team admins add, re-role and remove members and set the webhook (audited)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.webapp.helpers import client_for
from webapp.accounts.models import Membership
from webapp.reviews.models import AuditEntry

pytestmark = pytest.mark.django_db


def membership_of(user, team) -> Membership:
    return Membership.objects.get(user=user, team=team)


def test_members_see_their_teams_and_members(team, owner, teammate, team_admin):
    client = client_for(owner)
    listing = client.get(reverse("accounts:teams")).content.decode()
    assert reverse("accounts:team", args=[team.pk]) in listing and "acme" in listing
    page = client.get(reverse("accounts:team", args=[team.pk])).content.decode()
    assert 'id="member-bob"' in page and 'id="member-adam"' in page
    assert 'id="add-member"' not in page and 'id="webhook-form"' not in page


def test_the_teams_page_is_in_the_nav(owner):
    assert f'href="{reverse("accounts:teams")}"' in client_for(owner).get(reverse("jobs:list")).content.decode()


def test_outsiders_get_404_for_the_team_and_its_actions(team, owner, outsider):
    client = client_for(outsider)
    membership = membership_of(owner, team)
    assert client.get(reverse("accounts:team", args=[team.pk])).status_code == 404
    assert client.post(reverse("accounts:member_add", args=[team.pk]), {"username": "charlie"}).status_code == 404
    assert client.post(reverse("accounts:member_remove", args=[team.pk, membership.pk])).status_code == 404
    assert client.post(reverse("accounts:webhook", args=[team.pk]), {"webhook_url": "http://x.test"}).status_code == 404
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_an_admin_adds_a_member_with_a_role(team, team_admin, outsider):
    response = client_for(team_admin).post(
        reverse("accounts:member_add", args=[team.pk]), {"username": "charlie", "role": "reviewer"}
    )
    assert response.status_code == 302
    assert membership_of(outsider, team).role == "reviewer"
    entry = AuditEntry.objects.get(action="member_added")
    assert (entry.team_id, entry.actor, entry.details) == (team.pk, team_admin, {"user": "charlie", "role": "reviewer"})


def test_adding_an_unknown_user_or_twice_is_refused(team, team_admin, owner):
    client = client_for(team_admin)
    url = reverse("accounts:member_add", args=[team.pk])
    response = client.post(url, {"username": "nobody", "role": "member"}, follow=True)
    assert "there is no active user called &#x27;nobody&#x27;" in response.content.decode()
    response = client.post(url, {"username": "alice", "role": "member"}, follow=True)
    assert "already a member" in response.content.decode()
    assert not AuditEntry.objects.exists()


def test_an_admin_changes_a_role(team, team_admin, owner):
    membership = membership_of(owner, team)
    url = reverse("accounts:member_role", args=[team.pk, membership.pk])
    assert client_for(team_admin).post(url, {"role": "reviewer"}).status_code == 302
    assert membership_of(owner, team).role == "reviewer"
    entry = AuditEntry.objects.get(action="role_changed")
    assert entry.details == {"user": "alice", "role": "reviewer", "previous": "member"}


@pytest.mark.parametrize("persona", ["owner", "reviewer"])
def test_members_and_reviewers_cannot_manage_the_team(request, team, teammate, persona):
    user = request.getfixturevalue(persona)
    client = client_for(user)
    membership = membership_of(teammate, team)
    assert (
        client.post(reverse("accounts:member_role", args=[team.pk, membership.pk]), {"role": "admin"}).status_code
        == 403
    )
    assert client.post(reverse("accounts:member_remove", args=[team.pk, membership.pk])).status_code == 403
    assert client.post(reverse("accounts:member_add", args=[team.pk]), {"username": "bob"}).status_code == 403
    assert client.post(reverse("accounts:webhook", args=[team.pk]), {"webhook_url": "http://x.test"}).status_code == 403
    assert membership_of(teammate, team).role == "member" and not AuditEntry.objects.exists()


def test_an_admin_removes_a_member(team, team_admin, teammate):
    membership = membership_of(teammate, team)
    assert (
        client_for(team_admin).post(reverse("accounts:member_remove", args=[team.pk, membership.pk])).status_code == 302
    )
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEntry.objects.get(action="member_removed").details == {"user": "bob"}


def test_the_last_admin_can_neither_leave_nor_be_demoted(team, team_admin, reviewer):
    client = client_for(team_admin)
    own = membership_of(team_admin, team)
    response = client.post(reverse("accounts:member_role", args=[team.pk, own.pk]), {"role": "member"}, follow=True)
    assert "last admin" in response.content.decode()
    response = client.post(reverse("accounts:member_remove", args=[team.pk, own.pk]), follow=True)
    assert "last admin" in response.content.decode()
    assert membership_of(team_admin, team).role == "admin"
    # With a second admin, the first may step down.
    reviewer_membership = membership_of(reviewer, team)
    client.post(reverse("accounts:member_role", args=[team.pk, reviewer_membership.pk]), {"role": "admin"})
    client.post(reverse("accounts:member_role", args=[team.pk, own.pk]), {"role": "member"})
    assert membership_of(team_admin, team).role == "member"


def test_an_admin_sets_and_clears_the_webhook(team, team_admin):
    client = client_for(team_admin)
    url = reverse("accounts:webhook", args=[team.pk])
    assert client.post(url, {"webhook_url": "https://hooks.example.com/inferopt"}).status_code == 302
    team.refresh_from_db()
    assert team.webhook_url == "https://hooks.example.com/inferopt"
    client.post(url, {"webhook_url": ""})
    team.refresh_from_db()
    assert team.webhook_url == ""
    changes = [entry.details for entry in AuditEntry.objects.filter(action="webhook_changed")]
    assert changes == [{"webhook_url": "https://hooks.example.com/inferopt"}, {"webhook_url": None}]


@pytest.mark.parametrize("bad", ["file:///etc/passwd", "ftp://x.example.com/", "not a url", "gopher://x"])
def test_only_http_webhooks_are_accepted(team, team_admin, bad):
    response = client_for(team_admin).post(
        reverse("accounts:webhook", args=[team.pk]), {"webhook_url": bad}, follow=True
    )
    assert "must be an http:// or https:// URL" in response.content.decode()
    team.refresh_from_db()
    assert team.webhook_url == ""


def test_team_pages_need_login(client, team):
    for url in (reverse("accounts:teams"), reverse("accounts:team", args=[team.pk])):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
