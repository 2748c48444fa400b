"""``Authorization: Bearer <token>`` for the REST API and the download views."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from webapp.accounts.models import ApiToken, hash_token


def user_for_key(key: str):
    """The active user owning the unrevoked token ``key``, or None."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=hash_token(key), revoked=False, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user


def bearer_key(request) -> str | None:
    """The key from an ``Authorization: Bearer`` header, or None when there is none."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip() or None


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """DRF authentication for API tokens; an invalid token is a 401, never anonymous."""

    def authenticate(self, request):
        key = bearer_key(request)
        if key is None:
            return None
        user = user_for_key(key)
        if user is None:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        return user, None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "webapp.accounts.auth.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "API token from `manage.py api_token`"}
