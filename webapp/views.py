"""Project-level pages: the home redirect, the API documentation page and the 400 handler."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import JsonResponse
from django.shortcuts import redirect, render
from drf_spectacular.generators import SchemaGenerator

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def home(request):
    return redirect("jobs:list")


@login_required
def api_docs(request):
    """A readable, offline rendering of the OpenAPI schema (no CDN-hosted Swagger UI)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = []
    for path, item in schema.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method not in item:
                continue
            operation = item[method]
            body = operation.get("requestBody", {}).get("content", {})
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "parameters": operation.get("parameters", []),
                    "body_types": list(body),
                    "examples": [
                        json.dumps(example.get("value"), indent=2)
                        for content in body.values()
                        for example in content.get("examples", {}).values()
                    ],
                    "responses": {
                        code: response.get("description", "") for code, response in operation["responses"].items()
                    },
                }
            )
    return render(request, "api_docs.html", {"operations": operations, "info": schema.get("info", {})})


def _bad_request_reason(exception) -> str:
    if isinstance(exception, TooManyFieldsSent):
        return f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} form fields"
    if isinstance(exception, TooManyFilesSent):
        return f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files"
    if isinstance(exception, RequestDataTooBig):
        return (
            f"the request body is larger than the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
            "(send large content as a file upload)"
        )
    return "the request could not be processed"


def bad_request(request, exception=None):
    """``handler400``: Django's refusals of oversized or malformed requests, with the reason.

    Raised while parsing the body (``DATA_UPLOAD_MAX_NUMBER_FIELDS`` / ``_FILES`` /
    ``_MEMORY_SIZE``, other suspicious operations), before any view runs; API
    clients (``/api/``) get the ``{"error": ...}`` JSON every API error has, pages a
    short HTML page. Never a 500.
    """
    reason = _bad_request_reason(exception)
    if request.path.startswith("/api/"):
        return JsonResponse({"error": reason}, status=400)
    return render(request, "400.html", {"reason": reason}, status=400)
