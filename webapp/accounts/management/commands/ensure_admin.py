"""``manage.py ensure_admin --credentials-file PATH``: a first admin for a fresh install.

First run: creates superuser ``admin`` with a random password, makes it an admin
of team ``default``, writes ``admin:<password>`` to PATH (mode 600) and prints
the credentials once. Later runs change nothing.
"""

import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from webapp.accounts.models import Membership, Team
from webapp.accounts.services import DEFAULT_TEAM

USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the 'admin' superuser once and store its random password in a file readable only by you."

    def add_arguments(self, parser):
        parser.add_argument("--credentials-file", required=True, type=Path)

    def handle(self, *args, credentials_file: Path, **options):
        User = get_user_model()
        if User.objects.filter(username=USERNAME).exists():
            self.stdout.write(f"admin exists; credentials in {credentials_file}")
            return
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_superuser(USERNAME, email="", password=password)
            team, _ = Team.objects.get_or_create(name=DEFAULT_TEAM)
            Membership.objects.update_or_create(user=user, team=team, defaults={"role": Membership.Role.ADMIN})
        credentials_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{USERNAME}:{password}\n")
        os.chmod(credentials_file, 0o600)
        self.stdout.write(f"created superuser; log in with username {USERNAME} and password {password}")
        self.stdout.write(f"(saved to {credentials_file})")
