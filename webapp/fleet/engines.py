"""TensorRT engines in the web app: which GPU an engine artifact was built for, and refusing
a deployment download for another GPU (engines are not portable).

The rule itself is ``optimizers.passes.tensorrt_build.portability_problem`` (pure); this module
finds an artifact's ``engine.json`` facts (the job report's variant details, else the zip) and
turns a refusal into a page or JSON.
"""

from __future__ import annotations

import json
import zipfile
from typing import Any

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from optimizers.passes.tensorrt_build import ENGINE_METADATA_FILE, describe_target, portability_problem
from webapp.accounts.auth import bearer_key
from webapp.jobs.models import Artifact, Job


def engine_metadata_for(job: Job, artifact: Artifact) -> dict[str, Any] | None:
    """The artifact's engine metadata, or None when it is not a TensorRT engine (or has none)."""
    if artifact.format != "tensorrt":
        return None
    report = job.report or {}
    variants = list(report.get("variants") or [])
    variants += [c.get("variant") or {} for c in report.get("candidates") or []]
    for variant in variants:
        if variant.get("name") == artifact.name and (variant.get("details") or {}).get("engine"):
            return variant["details"]["engine"]
    try:  # the packaged zip holds the engine folder's engine.json
        with artifact.file.open("rb") as handle, zipfile.ZipFile(handle) as archive:
            return json.loads(archive.read(ENGINE_METADATA_FILE))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def parse_capability(text: str) -> tuple[int, int] | None:
    """``"9.0"`` / ``"sm90"`` / ``"90"`` → ``(9, 0)``; None if unreadable."""
    text = text.strip().lower().removeprefix("sm_").removeprefix("sm")
    if "." in text:
        major, _, minor = text.partition(".")
    elif text.isdigit() and len(text) >= 2:
        major, minor = text[:-1], text[-1]
    else:
        return None
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None


def deployment_refusal(request, job: Job, artifact: Artifact) -> HttpResponse | None:
    """None when a deployment download of ``artifact`` may go ahead; else the refusal response.

    A TensorRT engine is downloaded for deployment only for a named target GPU —
    ``?gpu=<name>&cc=<X.Y>`` (optionally ``&tensorrt=<version>``) — that matches where it was
    built: 400 without a target, 409 for a mismatch, each saying which GPU it was built for.
    """
    metadata = engine_metadata_for(job, artifact)
    if metadata is None:
        return None
    built_for = describe_target(metadata)
    gpu = request.GET.get("gpu", "").strip()
    capability = parse_capability(request.GET.get("cc", ""))
    context = {"job": job, "artifact": artifact, "built_for": built_for, "gpu": gpu, "cc": request.GET.get("cc", "")}
    if not gpu or capability is None:
        message = (
            f"This TensorRT engine was built for {built_for}. Engines are not portable: name the GPU you deploy on "
            "(?gpu=<GPU name>&cc=<compute capability, e.g. 9.0>) to download it for deployment."
        )
        return _refuse(request, message, 400, context)
    problem = portability_problem(
        metadata, gpu_name=gpu, compute_capability=capability, tensorrt_version=request.GET.get("tensorrt") or None
    )
    return _refuse(request, problem, 409, context) if problem else None


def _refuse(request, message: str, status: int, context: dict[str, Any]) -> HttpResponse:
    if bearer_key(request) is not None or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"error": message, "built_for": context["built_for"]}, status=status)
    return render(request, "fleet/engine_download.html", {**context, "message": message}, status=status)
