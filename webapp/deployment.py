"""Deployment helpers for ``webapp/settings.py``: secrets from files, the Redis cache, S3 storage.

Pure functions of an environment mapping (``os.environ`` by default), no Django imports, so
settings can call them at import time and tests can call them with a dict.

* ``env_secret(name)``: the value of ``<name>_FILE`` (a file's content, trailing newline
  stripped; Docker/Kubernetes secrets) if that variable is set, else ``<name>``. The file wins
  when both are set, so a secret mounted by the orchestrator overrides a stale variable.
* ``redis_cache(url)``: ``CACHES`` for Django's built-in Redis backend.
* ``s3_storage(environ)``: the ``STORAGES["default"]`` entry for S3-compatible object storage
  (django-storages) when ``INFEROPT_S3_BUCKET`` is set, else ``None``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class DeploymentConfigError(ValueError):
    """A deployment variable is missing or unusable; the message names the variable."""


def env_secret(name: str, default: str = "", environ: Mapping[str, str] | None = None) -> str:
    """``<name>_FILE``'s file content if that variable is set, else ``<name>``, else ``default``.

    Raises ``DeploymentConfigError`` when ``<name>_FILE`` names a file that cannot be read or is empty:
    a configured secret that is silently missing would fall back to an insecure default.
    """
    environ = os.environ if environ is None else environ
    file_name = environ.get(f"{name}_FILE", "").strip()
    if file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise DeploymentConfigError(f"{name}_FILE={file_name!r} cannot be read: {error.strerror}") from error
        if not value:
            raise DeploymentConfigError(f"{name}_FILE={file_name!r} is empty")
        return value
    return environ.get(name, "") or default


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("yes", "true", "1", "on"):
        return True
    if value in ("no", "false", "0", "off"):
        return False
    raise DeploymentConfigError(f"{name} must be a boolean (true/false), got {value!r}")


def proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """``SECURE_PROXY_SSL_HEADER`` from ``DJANGO_SECURE_PROXY_SSL_HEADER``: a header name, e.g.
    ``X-Forwarded-Proto`` (meaning ``X-Forwarded-Proto: https``), or ``Header-Name=value``; empty → None.

    Only set it when a proxy in front of the dashboard always sets (overwrites) that header:
    otherwise a client can claim HTTPS.
    """
    value = value.strip()
    if not value:
        return None
    header, _, expected = value.partition("=")
    header = header.strip()
    if not header or not all(part.isalnum() for part in header.replace("_", "-").split("-")):
        raise DeploymentConfigError(f"DJANGO_SECURE_PROXY_SSL_HEADER must be a header name, got {value!r}")
    return "HTTP_" + header.upper().replace("-", "_"), expected.strip() or "https"


def redis_cache(url: str) -> dict[str, Any]:
    """``CACHES`` on Redis at ``url``: shared by every web process and host (login rate limits).

    Use a database of its own (``redis://host:6379/1``), not the Celery broker's: ``cache.clear()``
    empties the whole database, queued jobs included.
    """
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "inferopt",
            "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5},
        }
    }


def s3_storage(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """``STORAGES["default"]`` for S3-compatible object storage, or ``None`` without ``INFEROPT_S3_BUCKET``.

    Variables: ``INFEROPT_S3_BUCKET`` (required), ``INFEROPT_S3_ENDPOINT_URL`` (MinIO, Ceph, R2, ...;
    empty for AWS), ``INFEROPT_S3_REGION``, ``INFEROPT_S3_ACCESS_KEY_ID`` / ``INFEROPT_S3_SECRET_ACCESS_KEY``
    (each also as ``*_FILE``; both empty → boto3's own chain: instance role, ``AWS_*`` variables),
    ``INFEROPT_S3_PREFIX`` (key prefix, default ``inferopt``), ``INFEROPT_S3_ADDRESSING_STYLE``
    (``path`` for most self-hosted servers, default ``auto``). Objects are private and never served by
    URL: downloads go through the permission-checked views, which read them through the storage API.
    """
    environ = os.environ if environ is None else environ
    bucket = environ.get("INFEROPT_S3_BUCKET", "").strip()
    if not bucket:
        return None
    access_key = env_secret("INFEROPT_S3_ACCESS_KEY_ID", environ=environ)
    secret_key = env_secret("INFEROPT_S3_SECRET_ACCESS_KEY", environ=environ)
    if bool(access_key) != bool(secret_key):
        raise DeploymentConfigError(
            "set both INFEROPT_S3_ACCESS_KEY_ID and INFEROPT_S3_SECRET_ACCESS_KEY (or neither, for boto3's own chain)"
        )
    addressing = environ.get("INFEROPT_S3_ADDRESSING_STYLE", "").strip() or "auto"
    if addressing not in ("auto", "path", "virtual"):
        raise DeploymentConfigError(f"INFEROPT_S3_ADDRESSING_STYLE must be auto, path or virtual, got {addressing!r}")
    options: dict[str, Any] = {
        "bucket_name": bucket,
        "location": environ.get("INFEROPT_S3_PREFIX", "inferopt").strip("/ "),
        "endpoint_url": environ.get("INFEROPT_S3_ENDPOINT_URL", "").strip() or None,
        "region_name": environ.get("INFEROPT_S3_REGION", "").strip() or None,
        "access_key": access_key or None,
        "secret_key": secret_key or None,
        "addressing_style": None if addressing == "auto" else addressing,
        "default_acl": None,  # the bucket's own policy (private)
        "querystring_auth": True,  # never public URLs, should anything ask for one
        "file_overwrite": False,  # a second artifact with the same name gets a new name, like on disk
        # django-storages reads an object into a SpooledTemporaryFile; its default (0) never spills to
        # disk, so a worker fetching a multi-GB model archive would hold all of it in memory.
        "max_memory_size": 64 * 1024**2,
        "use_ssl": _bool(environ, "INFEROPT_S3_USE_SSL", True),
        "verify": _bool(environ, "INFEROPT_S3_VERIFY_SSL", True),
    }
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}
