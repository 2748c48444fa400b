"""Makes the request's user the actor of audit entries written without one (deletions)."""

from __future__ import annotations

from webapp.reviews.services import acting_as


class AuditActorMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        with acting_as(getattr(request, "user", None)):
            return self.get_response(request)
