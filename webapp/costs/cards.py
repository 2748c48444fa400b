"""The live model card of an artifact: the packaged snapshot's sections plus what is known later.

Later knowledge: the zip's own sha256, the job's reviews (when the
``webapp.reviews`` app is installed) and costs at the team's prices with the
choices of the job page's cost form.
"""

from __future__ import annotations

import json
import zipfile
from typing import Any

from django.apps import apps

from optimizers import model_card
from optimizers.report import Report
from webapp.costs import services
from webapp.costs.reports import candidate_report
from webapp.jobs.models import Artifact, Job
from webapp.jobs.results import build_results
from webapp.jobs.search_results import build_search_results


def _variant_index(report: Report, artifact: Artifact) -> int | None:
    """Index of the report variant an artifact packages: its position (``order``), checked by name."""
    if 0 < artifact.order < len(report.variants) and report.variants[artifact.order].name == artifact.name:
        return artifact.order
    return next((i for i, v in enumerate(report.variants) if i > 0 and v.name == artifact.name), None)


def report_for_artifact(job: Job, artifact: Artifact) -> tuple[Report, int] | None:
    """The report a card of ``artifact`` describes and the index of its variant there.

    A recipe run's report as stored; for a search, the report the worker built
    for the packaged candidate (baseline + that candidate). None when neither fits.
    """
    results = build_results(job.report)
    if results is not None:
        index = _variant_index(results.report, artifact)
        return (results.report, index) if index is not None else None
    search = build_search_results(job.report)
    if search is None:
        return None
    versions = _manifest(artifact).get("library_versions")
    report = candidate_report(
        search.report, artifact.order - 1, job.recipe, versions if isinstance(versions, dict) else {}
    )
    return (report, 1) if report is not None else None


def _manifest(artifact: Artifact) -> dict[str, Any]:
    """The zip's ``manifest.json`` (empty when the file is missing or unreadable)."""
    try:
        with artifact.file.open("rb") as handle, zipfile.ZipFile(handle) as archive:
            manifest = json.loads(archive.read("manifest.json"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def dataset_info(job: Job, artifact: Artifact) -> model_card.DatasetInfo:
    """The data hashes the worker recorded in the zip's manifest, else what the job row knows."""
    data = _manifest(artifact).get("data")
    if isinstance(data, dict) and data.get("dataset"):
        return model_card.DatasetInfo(
            name=str(data["dataset"]),
            file_sha256=data.get("dataset_file_sha256"),
            eval_fingerprint=data.get("eval_fingerprint_sha256"),
            texts=data.get("eval_texts"),
            pairs=data.get("eval_pairs"),
        )
    if job.dataset_id:
        return model_card.DatasetInfo(name=job.dataset.name, file_sha256=job.dataset.sha256 or None)
    return model_card.DatasetInfo(
        name=str(job.recipe.get("dataset") or "zoo:pydoc-retrieval"),
        note="This artifact was packaged before evaluation data was fingerprinted.",
    )


def approvals(job: Job) -> tuple[list[model_card.ApprovalInfo] | None, str]:
    """The job's reviews, oldest first, and a note with the current approval state.

    ``(None, note)`` when the reviews app is not installed or cannot be read.
    A review decides for the whole job (its gate judges the final variant).
    """
    if not apps.is_installed("webapp.reviews"):
        return None, "Approvals are kept by the reviews app, which is not installed on this server."
    try:
        from webapp.reviews.services import State, approval_state

        reviews = list(job.reviews.order_by("created_at", "id"))
        state = State.LABELS.get(approval_state(job), approval_state(job))
    except (ImportError, AttributeError, LookupError):
        return None, "Approvals could not be read."
    rows = [
        model_card.ApprovalInfo(
            reviewer=review.reviewer_name,
            decision=review.get_decision_display(),
            at=f"{review.created_at:%Y-%m-%d %H:%M} UTC",
            comment=review.reason
            + (f" (expires {review.expires_at:%Y-%m-%d %H:%M} UTC)" if getattr(review, "expires_at", None) else ""),
        )
        for review in reviews
    ]
    return rows, f"Current state: {state}. Reviews decide for the whole job; its gate judges the final variant."


def live_card(
    job: Job, artifact: Artifact, report: Report, index: int, choice: services.CostChoice | None
) -> model_card.ModelCard:
    """The card of ``artifact``, which packages ``report.variants[index]``."""
    lines: list[model_card.CostLine] = []
    note = "The price list is empty, or no benchmark was recorded: no cost computed."
    if choice is not None:
        breakdown = services.breakdown_for(report, choice, job.optimization_seconds)
        lines = model_card.cost_lines(breakdown, index)
        note = (
            f"Computed with {choice.instance.name} at ${choice.instance.price_display}/h "
            f"(price as of {choice.instance.price_date:%Y-%m-%d}; {choice.instance.notes or 'no notes'}), "
            f"batch {choice.batch_size}. Change these on the job page's cost panel."
        )
    reviews, reviews_note = approvals(job)
    return model_card.build_model_card(
        report,
        index,
        job=f"#{job.pk} {job.name} (team {job.team.name})",
        artifact_sha256=artifact.sha256,
        dataset=dataset_info(job, artifact),
        cost_lines=lines,
        cost_note=note,
        approvals=reviews,
        approvals_note=reviews_note,
    )
