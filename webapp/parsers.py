"""The REST API's JSON parser, with a size limit (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

A module of its own: DRF imports the default parsers while ``rest_framework.views`` loads, so this
module must not import ``rest_framework.views`` (``webapp.api`` does).
"""

from __future__ import annotations

import io

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser


class RequestBodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is too large"
    default_code = "request_too_large"


class LimitedJSONParser(JSONParser):
    """DRF's ``JSONParser`` that reads at most ``settings.INFEROPT_API_MAX_JSON_BYTES`` (1 MiB) of the body.

    Two caps apply to a JSON body. The installed DRF (3.18) hands JSON parsers ``request.body``, so
    Django first refuses a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MiB) — from its declared
    ``Content-Length``, before reading it — with a 400 (``webapp.views.bad_request``, ``{"error": ...}``).
    This parser then applies the API's own, smaller cap: over it → ``RequestBodyTooLarge`` (413). Given
    the raw request stream instead (DRF versions that pass it, other callers), it still refuses a declared
    length over the cap before reading a byte, and otherwise reads in chunks and stops as soon as the
    body passes the cap. Invalid or too deeply nested JSON → ``ParseError`` (400), not a 500.
    """

    chunk_size = 64 * 1024

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = settings.INFEROPT_API_MAX_JSON_BYTES
        too_large = RequestBodyTooLarge(f"the JSON body is larger than the limit of {limit} bytes")
        request = parser_context.get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        try:
            if declared and int(declared) > limit:
                raise too_large
        except ValueError:
            raise exceptions.ParseError("invalid Content-Length header") from None
        body = bytearray()
        while chunk := stream.read(self.chunk_size):
            body += chunk
            if len(body) > limit:
                raise too_large
        try:
            return super().parse(io.BytesIO(bytes(body)), media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None
