"""``manage.py setup_demo``: create the built-in demo catalogue entries (idempotent)."""

from django.core.management.base import BaseCommand

from webapp.accounts.models import Team
from webapp.accounts.services import DEFAULT_TEAM
from webapp.catalog.services import ensure_demo_models


class Command(BaseCommand):
    help = "Create the built-in demo models and the 'default' team if missing."

    def handle(self, *args, **options):
        Team.objects.get_or_create(name=DEFAULT_TEAM)
        for entry in ensure_demo_models():
            self.stdout.write(f"demo model ready: {entry.name} ({entry.reference})")
