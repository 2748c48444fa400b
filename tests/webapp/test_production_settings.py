"""The production profile (INFEROPT_ENV=production): check --deploy is clean, secrets from *_FILE,
HTTPS settings, Redis cache, JSON logs, S3 storage; the development default is left as it was.

Settings are read once per process, so each profile is loaded in a subprocess with its own environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from webapp.deployment import DeploymentConfigError, env_secret, proxy_ssl_header, s3_storage

REPO = Path(__file__).resolve().parents[2]
SECRET_KEY = "prod-" + "k3y-Xq9" * 10  # 75 characters, varied: passes check --deploy's W009
# Variables of the machine running the tests that would leak into the profile under test (CI sets DATABASE_URL).
CLEARED_PREFIXES = ("DJANGO_", "INFEROPT_", "DATABASE_", "REDIS_", "EMAIL_", "AWS_")


def clean_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(CLEARED_PREFIXES)}
    env.update(DJANGO_SETTINGS_MODULE="webapp.settings", INFEROPT_DATA_DIR=str(tmp_path / "data"), **variables)
    return env


def production_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    return clean_env(tmp_path, INFEROPT_ENV="production", DJANGO_SECRET_KEY=SECRET_KEY, **variables)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


SHOW_SETTINGS = """
import json, logging, django
django.setup()
from django.conf import settings
names = {names!r}
print(json.dumps({{name: getattr(settings, name, None) for name in names}}, default=str))
"""


def load_settings(env: dict[str, str], *names: str) -> dict[str, Any]:
    result = run(env, "-c", SHOW_SETTINGS.format(names=list(names)))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_reports_no_issues_in_production(tmp_path):
    result = run(production_env(tmp_path), "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_still_warns_for_the_development_default(tmp_path):
    # The check above is meaningful: the same command flags the development profile.
    result = run(clean_env(tmp_path), "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["DJANGO_SECRET_KEY"]
    result = run(env, "manage.py", "check")
    assert result.returncode != 0
    assert "needs DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE" in result.stderr
    assert not (tmp_path / "data" / "secret_key").exists()


def test_production_refuses_debug(tmp_path):
    result = run(production_env(tmp_path, DJANGO_DEBUG="true"), "manage.py", "check")
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be false" in result.stderr


def test_production_security_settings_and_hosts_come_from_the_environment(tmp_path):
    env = production_env(
        tmp_path,
        DJANGO_ALLOWED_HOSTS="inferopt.example.com, .internal.example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://inferopt.example.com",
        DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        DJANGO_SECURE_HSTS_SECONDS="600",
    )
    values = load_settings(
        env,
        "DEBUG",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_PROXY_SSL_HEADER",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "CELERY_WORKER_HIJACK_ROOT_LOGGER",
    )
    assert values == {
        "DEBUG": False,
        "ALLOWED_HOSTS": ["inferopt.example.com", ".internal.example.com"],
        "CSRF_TRUSTED_ORIGINS": ["https://inferopt.example.com"],
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "CELERY_WORKER_HIJACK_ROOT_LOGGER": False,
    }


def test_the_proxy_header_is_opt_in(tmp_path):
    assert load_settings(production_env(tmp_path), "SECURE_PROXY_SSL_HEADER") == {"SECURE_PROXY_SSL_HEADER": None}


def test_secret_files_win_over_variables(tmp_path):
    key_file = tmp_path / "django_secret_key"
    key_file.write_text("from-the-file-" + "s3cr3t" * 10 + "\n")
    url_file = tmp_path / "database_url"
    url_file.write_text("postgres://inferopt:p%40ss@db.internal:5432/inferopt\n")
    env = production_env(
        tmp_path,
        DJANGO_SECRET_KEY_FILE=str(key_file),
        DATABASE_URL="sqlite:////nowhere/stale.sqlite3",
        DATABASE_URL_FILE=str(url_file),
        REDIS_URL_FILE=str(url_file.with_name("redis_url")),
    )
    url_file.with_name("redis_url").write_text("redis://:hunter2@redis.internal:6379/0")
    values = load_settings(env, "SECRET_KEY", "DATABASES", "CELERY_BROKER_URL")
    assert values["SECRET_KEY"] == "from-the-file-" + "s3cr3t" * 10
    database = values["DATABASES"]["default"]
    assert (database["ENGINE"], database["HOST"], database["NAME"], database["PASSWORD"]) == (
        "django.db.backends.postgresql",
        "db.internal",
        "inferopt",
        "p@ss",
    )
    assert values["CELERY_BROKER_URL"] == "redis://:hunter2@redis.internal:6379/0"


def test_a_secret_file_that_cannot_be_read_stops_the_settings(tmp_path):
    result = run(production_env(tmp_path, DATABASE_URL_FILE=str(tmp_path / "missing")), "manage.py", "check")
    assert result.returncode != 0
    assert "DATABASE_URL_FILE=" in result.stderr and "cannot be read" in result.stderr


def test_env_secret_reads_the_file_first_then_the_variable_then_the_default(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    assert env_secret("TOKEN", "fallback", {"TOKEN": "from-env", "TOKEN_FILE": str(secret)}) == "from-file"
    assert env_secret("TOKEN", "fallback", {"TOKEN": "from-env"}) == "from-env"
    assert env_secret("TOKEN", "fallback", {}) == "fallback"
    secret.write_text("\n")
    with pytest.raises(DeploymentConfigError, match="TOKEN_FILE=.* is empty"):
        env_secret("TOKEN", "fallback", {"TOKEN_FILE": str(secret)})


def test_proxy_ssl_header_values():
    assert proxy_ssl_header("") is None
    assert proxy_ssl_header("X-Forwarded-Proto") == ("HTTP_X_FORWARDED_PROTO", "https")
    assert proxy_ssl_header("X-Forwarded-Ssl=on") == ("HTTP_X_FORWARDED_SSL", "on")
    with pytest.raises(DeploymentConfigError):
        proxy_ssl_header("X-Forwarded-Proto: https")


def test_production_cache_is_redis_when_redis_url_is_set(tmp_path):
    env = production_env(tmp_path, REDIS_URL="redis://redis:6379/0", INFEROPT_CACHE_URL="redis://redis:6379/1")
    cache = load_settings(env, "CACHES")["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == "redis://redis:6379/1"
    env = production_env(tmp_path, REDIS_URL="redis://redis:6379/0")
    assert load_settings(env, "CACHES")["CACHES"]["default"]["LOCATION"] == "redis://redis:6379/0"


def test_any_profile_shares_its_cache_when_inferopt_cache_url_is_set(tmp_path):
    # `make run` sets it, so its web processes and worker share rate limits and pre-built job figures.
    env = clean_env(tmp_path, INFEROPT_CACHE_URL="redis://127.0.0.1:6390/1", REDIS_URL="redis://127.0.0.1:6390/0")
    cache = load_settings(env, "CACHES")["CACHES"]["default"]
    assert (cache["BACKEND"], cache["LOCATION"]) == (
        "django.core.cache.backends.redis.RedisCache",
        "redis://127.0.0.1:6390/1",
    )
    # Outside production REDIS_URL alone is only the broker: the cache stays per process.
    env = clean_env(tmp_path, REDIS_URL="redis://127.0.0.1:6390/0")
    assert load_settings(env, "CACHES")["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")


LOG_A_RECORD = """
import django, logging
django.setup()
logging.getLogger("inferopt.test").warning("job %s finished", 7, extra={"job_id": 7})
try:
    raise RuntimeError("boom")
except RuntimeError:
    logging.getLogger("inferopt.test").exception("it failed")
"""


def test_production_logs_are_json_lines(tmp_path):
    result = run(production_env(tmp_path), "-c", LOG_A_RECORD)
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stderr.strip().splitlines()[-2:])
    assert first["message"] == "job 7 finished"
    assert (first["level"], first["logger"], first["job_id"]) == ("WARNING", "inferopt.test", 7)
    assert first["time"].endswith("+00:00")
    assert second["message"] == "it failed"
    assert "RuntimeError: boom" in second["exception"]


def test_the_development_profile_is_unchanged(tmp_path):
    values = load_settings(
        clean_env(tmp_path),
        "DEBUG",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SESSION_COOKIE_SECURE",
        "CACHES",
        "DATABASES",
        "STORAGES",
        "LOGGING",
    )
    assert values["DEBUG"] is False
    assert (values["SECURE_SSL_REDIRECT"], values["SECURE_HSTS_SECONDS"], values["SESSION_COOKIE_SECURE"]) == (
        False,
        0,
        False,
    )
    assert values["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert values["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert values["DATABASES"]["default"]["NAME"] == str(tmp_path / "data" / "db.sqlite3")
    assert values["STORAGES"]["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert "formatter" not in values["LOGGING"]["handlers"]["console"]
    # The key is generated once into the data folder, as before.
    assert (tmp_path / "data" / "secret_key").read_text().strip()


SHOW_STORAGE = """
import json, django
django.setup()
from django.conf import settings
from django.core.files.storage import storages
default_storage = storages["default"]
print(json.dumps({"backend": settings.STORAGES["default"]["BACKEND"], "class": type(default_storage).__name__,
                  "bucket": default_storage.bucket_name, "endpoint": default_storage.endpoint_url,
                  "location": default_storage.location, "access_key": default_storage.access_key,
                  "secret_key": default_storage.secret_key, "addressing_style": default_storage.addressing_style}))
"""


def test_s3_bucket_setting_makes_the_default_storage_s3(tmp_path):
    secret = tmp_path / "s3_secret"
    secret.write_text("secret-from-file\n")
    env = production_env(
        tmp_path,
        INFEROPT_S3_BUCKET="inferopt-artifacts",
        INFEROPT_S3_ENDPOINT_URL="http://minio:9000",
        INFEROPT_S3_ACCESS_KEY_ID="inferopt",
        INFEROPT_S3_SECRET_ACCESS_KEY_FILE=str(secret),
        INFEROPT_S3_ADDRESSING_STYLE="path",
    )
    result = run(env, "-c", SHOW_STORAGE)  # builds the storage object; nothing connects to the endpoint
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "backend": "storages.backends.s3.S3Storage",
        "class": "S3Storage",
        "bucket": "inferopt-artifacts",
        "endpoint": "http://minio:9000",
        "location": "inferopt",
        "access_key": "inferopt",
        "secret_key": "secret-from-file",
        "addressing_style": "path",
    }


def test_s3_storage_options():
    assert s3_storage({}) is None
    options = s3_storage({"INFEROPT_S3_BUCKET": "b", "INFEROPT_S3_PREFIX": "/team-a/"})["OPTIONS"]
    assert (options["bucket_name"], options["location"], options["endpoint_url"]) == ("b", "team-a", None)
    assert (options["access_key"], options["secret_key"], options["default_acl"]) == (None, None, None)
    assert options["file_overwrite"] is False
    assert options["max_memory_size"] == 64 * 1024**2  # large objects spill to a temporary file when read
    with pytest.raises(DeploymentConfigError, match="both"):
        s3_storage({"INFEROPT_S3_BUCKET": "b", "INFEROPT_S3_ACCESS_KEY_ID": "only-the-id"})


@pytest.mark.django_db
def test_healthz_answers_plain_http_probes_before_host_checks_and_redirects(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["inferopt.example.com"]
    response = client.get("/healthz", HTTP_HOST="127.0.0.1:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    # Everything else is still redirected to HTTPS.
    assert client.get("/jobs/", HTTP_HOST="inferopt.example.com").status_code == 301


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_does_not_answer(client, monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise RuntimeError("connection refused")

    monkeypatch.setattr("webapp.health.connection.cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "database unavailable"}
