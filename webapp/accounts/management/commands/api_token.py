"""``manage.py api_token USERNAME [--team NAME] [--role ROLE] [--name LABEL]``.

Creates the user (unusable password) and the team membership when missing, then
issues a new API token and prints it as the LAST line of output, so scripts can
take it with ``tail -n 1``.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from webapp.accounts.models import ApiToken, Membership
from webapp.accounts.services import DEFAULT_TEAM, ensure_member


class Command(BaseCommand):
    help = "Create (if needed) a user and team membership, and print a new API token on the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--team", default=DEFAULT_TEAM, help="team name (created if missing; default: default)")
        parser.add_argument("--role", default=Membership.Role.MEMBER, choices=Membership.Role.values)
        parser.add_argument("--name", default="cli", help="a label for the token")

    def handle(self, *args, username, team, role, name, **options):
        with transaction.atomic():
            user, team_obj = ensure_member(username, team, role)
            token, key = ApiToken.issue(user, name)
        self.stdout.write(f"token {token.prefix}… for {user.username} in team {team_obj.name} ({role}); shown once:")
        self.stdout.write(key)
