"""Shared REST API pieces: the ``{"error": ...}`` error shape and the team of a request."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from webapp.accounts.services import team_for_request


class ErrorSerializer(serializers.Serializer):
    """Every API error: one readable message."""

    error = serializers.CharField()


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        messages = []
        for key, value in detail.items():
            label = key if key not in ("non_field_errors", "detail") else ""
            messages += _flatten(value, f"{prefix}{label}: " if label else prefix)
        return messages
    if isinstance(detail, list):
        return [message for item in detail for message in _flatten(item, prefix)]
    return [f"{prefix}{detail}"]


def exception_handler(exc, context):
    """DRF errors as ``{"error": "<one readable message>"}`` (same shape as our own 400s)."""
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = {"error": "; ".join(_flatten(response.data))}
    return response


def error(message: str, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"error": message}, status=code)


def request_team(request):
    """(team, error response): ``?team=`` or body ``team`` if given, else the user's first team."""
    name = request.query_params.get("team")
    if not name and isinstance(request.data, dict):
        name = request.data.get("team")
    if name is not None and not isinstance(name, str):
        return None, error("'team' must be a team name")
    team = team_for_request(request.user, name)
    if team is None:
        message = f"you are not a member of team '{name}'" if name else "you are not a member of any team"
        return None, error(message)
    return team, None
