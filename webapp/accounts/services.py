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


# --- team management (team admins) ------------------------------------------------------------


class TeamError(Exception):
    """A team change the rules refuse; ``kind`` ``forbidden`` (HTTP 403) or ``invalid`` (HTTP 400)."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


def role_of(user, team: Team) -> str | None:
    """``user``'s role in ``team``, or None when not a member."""
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, team=team).values_list("role", flat=True).first()


def is_team_admin(user, team: Team) -> bool:
    return role_of(user, team) == Membership.Role.ADMIN


def _audit(action: str, team: Team, actor, **details) -> None:
    from webapp.reviews.services import record  # reviews builds on accounts, not the reverse

    record(action, team=team, actor=actor, details=details)


def _require_admin(actor, team: Team) -> None:
    if not is_team_admin(actor, team):
        raise TeamError(f"only admins of team {team.name} can manage it", "forbidden")


def _keep_an_admin(team: Team, membership: Membership) -> None:
    if membership.role == Membership.Role.ADMIN and not (
        team.memberships.filter(role=Membership.Role.ADMIN).exclude(pk=membership.pk).exists()
    ):
        raise TeamError(
            f"{membership.user.get_username()} is the last admin of team {team.name}: make someone else admin first"
        )


def add_member(actor, team: Team, username: str, role: str) -> Membership:
    """Add the existing user ``username`` to ``team`` with ``role`` (team admins only; audited)."""
    _require_admin(actor, team)
    if role not in Membership.Role.values:
        raise TeamError(f"role must be one of {', '.join(Membership.Role.values)}")
    user = get_user_model().objects.filter(username=(username or "").strip(), is_active=True).first()
    if user is None:
        raise TeamError(f"there is no active user called {username!r} (staff create users in the admin)")
    if Membership.objects.filter(user=user, team=team).exists():
        raise TeamError(f"{user.get_username()} is already a member of team {team.name}")
    membership = Membership.objects.create(user=user, team=team, role=role)
    _audit("member_added", team, actor, user=user.get_username(), role=role)
    return membership


def change_role(actor, membership: Membership, role: str) -> Membership:
    """Give a member another role (team admins only; the team keeps at least one admin; audited)."""
    team = membership.team
    _require_admin(actor, team)
    if role not in Membership.Role.values:
        raise TeamError(f"role must be one of {', '.join(Membership.Role.values)}")
    if role == membership.role:
        return membership
    if role != Membership.Role.ADMIN:
        _keep_an_admin(team, membership)
    previous, membership.role = membership.role, role
    membership.save(update_fields=["role"])
    _audit("role_changed", team, actor, user=membership.user.get_username(), role=role, previous=previous)
    return membership


def remove_member(actor, membership: Membership) -> None:
    """Remove a member (team admins only; never the last admin; audited)."""
    team = membership.team
    _require_admin(actor, team)
    _keep_an_admin(team, membership)
    username = membership.user.get_username()
    membership.delete()
    _audit("member_removed", team, actor, user=username)


def set_webhook(actor, team: Team, url: str) -> Team:
    """Set or clear the team's review webhook (http or https; team admins only; audited)."""
    from django.core.exceptions import ValidationError
    from django.core.validators import URLValidator

    _require_admin(actor, team)
    url = (url or "").strip()
    if url:
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            raise TeamError("the webhook URL must be an http:// or https:// URL") from None
        if len(url) > Team._meta.get_field("webhook_url").max_length:
            raise TeamError("the webhook URL is too long")
    if url != team.webhook_url:
        team.webhook_url = url
        team.save(update_fields=["webhook_url"])
        _audit("webhook_changed", team, actor, webhook_url=url or None)
    return team
