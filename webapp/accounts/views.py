"""Team pages: your teams and their members; team admins add, re-role and remove members and set the webhook.

Token pages: each user lists, creates and revokes their own API tokens (only the hash is stored).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from webapp.accounts.models import ApiToken, Membership
from webapp.accounts.services import (
    TeamError,
    add_member,
    change_role,
    is_team_admin,
    remove_member,
    role_of,
    set_webhook,
    teams_of,
)


def _team(request, pk: int):
    return get_object_or_404(teams_of(request.user), pk=pk)


@login_required
def team_list(request):
    memberships = Membership.objects.filter(user=request.user).select_related("team").order_by("team__name")
    return render(request, "accounts/team_list.html", {"memberships": memberships})


@login_required
def team_detail(request, pk: int):
    team = _team(request, pk)
    members = team.memberships.select_related("user").order_by("user__username")
    context = {
        "team": team,
        "members": members,
        "my_role": role_of(request.user, team),
        "is_admin": is_team_admin(request.user, team),
        "roles": Membership.Role.choices,
    }
    return render(request, "accounts/team_detail.html", context)


def _refused(request, team, error: TeamError):
    if error.kind == "forbidden":
        context = {"title": "Not allowed", "message": error.message, "team": team}
        return render(request, "accounts/team_refused.html", context, status=403)
    messages.error(request, error.message)
    return redirect("accounts:team", pk=team.pk)


@login_required
@require_POST
def member_add(request, pk: int):
    team = _team(request, pk)
    try:
        membership = add_member(request.user, team, request.POST.get("username", ""), request.POST.get("role", ""))
    except TeamError as error:
        return _refused(request, team, error)
    messages.success(request, f"{membership.user.get_username()} added as {membership.role}.")
    return redirect("accounts:team", pk=team.pk)


@login_required
@require_POST
def member_role(request, pk: int, membership_id: int):
    team = _team(request, pk)
    membership = get_object_or_404(team.memberships.select_related("user"), pk=membership_id)
    try:
        change_role(request.user, membership, request.POST.get("role", ""))
    except TeamError as error:
        return _refused(request, team, error)
    messages.success(request, f"{membership.user.get_username()} is now {membership.role}.")
    return redirect("accounts:team", pk=team.pk)


@login_required
@require_POST
def member_remove(request, pk: int, membership_id: int):
    team = _team(request, pk)
    membership = get_object_or_404(team.memberships.select_related("user"), pk=membership_id)
    try:
        remove_member(request.user, membership)
    except TeamError as error:
        return _refused(request, team, error)
    messages.success(request, f"{membership.user.get_username()} removed from team {team.name}.")
    if role_of(request.user, team) is None:
        return redirect("accounts:teams")
    return redirect("accounts:team", pk=team.pk)


@login_required
@require_POST
def webhook(request, pk: int):
    team = _team(request, pk)
    try:
        set_webhook(request.user, team, request.POST.get("webhook_url", ""))
    except TeamError as error:
        return _refused(request, team, error)
    messages.success(request, "Webhook saved." if team.webhook_url else "Webhook removed.")
    return redirect("accounts:team", pk=team.pk)


@login_required
def token_list(request):
    """Your API tokens; POST ``name`` creates one and shows its key once (it is stored hashed)."""
    new_key = None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:100] or "web"
        token, new_key = ApiToken.issue(request.user, name)
        messages.success(request, f"Token {token.prefix}… created. Copy it now: it is not shown again.")
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "accounts/token_list.html", {"tokens": tokens, "new_key": new_key})


@login_required
@require_POST
def token_revoke(request, pk: int):
    """Revoke one of your own tokens (others' are 404); requests with it get 401 from then on."""
    token = get_object_or_404(ApiToken.objects.filter(user=request.user), pk=pk)
    ApiToken.objects.filter(pk=token.pk).update(revoked=True)
    messages.success(request, f"Token {token.prefix}… revoked.")
    return redirect("accounts:tokens")
