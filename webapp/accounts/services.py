"""Team membership queries: the one place that decides who sees what."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from webapp.accounts.models import Membership, Team

DEFAULT_TEAM = "default"


def teams_of(user) -> QuerySet[Team]:
    """Teams ``user`` belongs to (none for anonymous users), ordered by name."""
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user).order_by("name")


def default_team(user) -> Team | None:
    """The team used when a request names none: the user's first team by name."""
    return teams_of(user).first()


def team_for_request(user, name: str | None) -> Team | None:
    """The team called ``name`` if ``user`` belongs to it, else the default; None if no team fits."""
    if name:
        return teams_of(user).filter(name=name).first()
    return default_team(user)


def ensure_member(username: str, team_name: str = DEFAULT_TEAM, role: str = Membership.Role.MEMBER):
    """Get or create ``username`` (unusable password when new) and its membership; return (user, team)."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    team, _ = Team.objects.get_or_create(name=team_name)
    membership, created = Membership.objects.get_or_create(user=user, team=team, defaults={"role": role})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return user, team
