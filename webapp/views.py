"""Project-level pages: the home redirect and the API documentation page."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
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
