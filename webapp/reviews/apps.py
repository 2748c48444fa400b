from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "webapp.reviews"
    label = "reviews"
    verbose_name = "Reviews and audit log"

    def ready(self) -> None:
        from webapp.reviews import signals  # noqa: F401  (deletion audit)
