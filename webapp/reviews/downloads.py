"""Download gating: artifacts of a job awaiting approval are not handed out "for deployment".

``?purpose=deploy`` (the default) needs ``deployable(job)``; ``?purpose=inspect``
is open to the job's team and clearly labelled as not approved. Every download,
and every refused one, is written to the audit log.
"""

from __future__ import annotations

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from webapp.accounts.auth import bearer_key
from webapp.jobs.models import Artifact, Job
from webapp.reviews.models import AuditEntry
from webapp.reviews.services import DEPLOYABLE_STATES, State, approval_state, record

DEPLOY = "deploy"
INSPECT = "inspect"
PURPOSES = (DEPLOY, INSPECT)

REFUSED_MESSAGES = {
    State.AWAITING: "it awaits a reviewer's approval",
    State.APPROVED_EXPIRED: "its approval has expired",
    State.REJECTED: "a reviewer rejected it",
}


def _wants_json(request) -> bool:
    return bearer_key(request) is not None or "application/json" in request.headers.get("Accept", "")


def _error(request, message: str, status: int, context: dict) -> HttpResponse:
    if _wants_json(request):
        extra = {key: context[key] for key in ("state", "inspect_url") if key in context}
        return JsonResponse({"error": message, **extra}, status=status)
    return render(request, "reviews/download_refused.html", {**context, "message": message}, status=status)


def check_download(request, job: Job, artifact: Artifact) -> tuple[str, HttpResponse | None]:
    """(purpose, refusal): the refusal is a 400 for an unknown purpose, a 403 for a deployment
    download of a job that is not deployable (audited as ``download_refused``), else None."""
    purpose = request.GET.get("purpose") or DEPLOY
    if purpose not in PURPOSES:
        message = f"purpose must be one of {', '.join(PURPOSES)}"
        return purpose, _error(request, message, 400, {"job": job, "artifact": artifact, "title": "Bad request"})
    if purpose == DEPLOY:
        state = approval_state(job)
        if state not in DEPLOYABLE_STATES:
            message = (
                f"job #{job.pk} is not approved for deployment: {REFUSED_MESSAGES.get(state, state)} "
                f"(gate outcome: {job.gate_outcome}). Download it for inspection with ?purpose=inspect."
            )
            record(
                AuditEntry.Action.DOWNLOAD_REFUSED,
                job=job,
                actor=request.user,
                details={"artifact": artifact.pk, "name": artifact.name, "purpose": purpose, "state": state},
            )
            inspect_url = request.path + "?purpose=inspect"
            context = {"job": job, "artifact": artifact, "state": state, "inspect_url": inspect_url}
            return purpose, _error(request, message, 403, context)
    return purpose, None


def record_download(request, job: Job, artifact: Artifact | None, purpose: str, **details) -> None:
    """Audit one download that is being served (an artifact, or another file named in ``details``)."""
    if artifact is not None:
        details = {"artifact": artifact.pk, "name": artifact.name, "sha256": artifact.sha256, **details}
    record(AuditEntry.Action.DOWNLOAD, job=job, actor=request.user, details={"purpose": purpose, **details})
