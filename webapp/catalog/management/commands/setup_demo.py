"""``manage.py setup_demo``: create the built-in demo catalogue entries and build the demo LMs (idempotent)."""

from django.core.management.base import BaseCommand

from webapp.accounts.models import Team
from webapp.accounts.services import DEFAULT_TEAM
from webapp.catalog.services import build_demo_models, ensure_demo_models


class Command(BaseCommand):
    help = (
        "Create the built-in demo models and the 'default' team if missing, and train the demo language "
        "models (zoo:tiny-lm, zoo:tiny-lm-draft; a few minutes on the CPU the first time, cached after) and the "
        "digits CNN (zoo:digits-cnn; seconds)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--skip-build", action="store_true", help="only create the catalogue entries; do not train the demo LMs"
        )

    def handle(self, *args, **options):
        Team.objects.get_or_create(name=DEFAULT_TEAM)
        if not options["skip_build"]:
            last: dict[str, str] = {}

            def progress(reference: str, fraction: float, message: str) -> None:
                if last.get(reference) != message:
                    last[reference] = message
                    self.stdout.write(f"{reference} [{fraction * 100:5.1f}%] {message}")
                    self.stdout.flush()

            build_demo_models(progress)
        for entry in ensure_demo_models():
            state = "ready" if entry.sha256 else "listed (not built yet)"
            self.stdout.write(f"demo model {state}: {entry.name} ({entry.reference})")
