from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "webapp.accounts"
    label = "accounts"
    verbose_name = "Accounts and teams"

    def ready(self) -> None:
        # Connects the sign-in failure counters (user_login_failed / user_logged_in receivers).
        from webapp.accounts import ratelimit  # noqa: F401
