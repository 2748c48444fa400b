"""``GET /healthz``: a liveness check for container orchestrators and load balancers.

A middleware, first in ``MIDDLEWARE``, rather than a URL: the check must answer a probe that
connects to ``127.0.0.1`` over plain HTTP, before ``ALLOWED_HOSTS`` (the Host header is never read
here) and the production profile's HTTPS redirect could turn it away. It tells nothing but
``ok`` (200) or ``database unavailable`` (503) and needs no login.
"""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse

HEALTH_PATH = "/healthz"

logger = logging.getLogger(__name__)


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info != HEALTH_PATH or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:  # any database failure means "not healthy", whatever the driver raises
            logger.exception("health check: the database does not answer")
            return JsonResponse({"status": "database unavailable"}, status=503)
        return JsonResponse({"status": "ok"})
