"""Job pages: list, new-job form, detail with live status, results and downloads."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import get_valid_filename
from django.views.decorators.http import require_POST

from optimizers.errors import RecipeError
from optimizers.passes import all_passes
from webapp.catalog.services import ensure_demo_models
from webapp.fleet.engines import deployment_refusal
from webapp.fleet.routing import pass_availability
from webapp.jobs.access import login_or_token_required
from webapp.jobs.advice import model_advice
from webapp.jobs.estimates import estimate_recipe
from webapp.jobs.figure_cache import report_figures
from webapp.jobs.forms import NewJobForm, SearchJobForm, ServingJobForm
from webapp.jobs.models import Artifact, Job
from webapp.jobs.results import build_results
from webapp.jobs.search_results import build_search_results
from webapp.jobs.services import (
    RetryError,
    cancel_job,
    mark_lost_jobs,
    retry_job,
    submit_job,
    submit_search_job,
    submit_serving_job,
)
from webapp.jobs.serving_results import build_serving_results
from webapp.reviews.downloads import check_download, record_download

LOG_TAIL_CHARS = 20_000


def _visible_job(request, pk: int) -> Job:
    return get_object_or_404(Job.objects.visible_to(request.user).select_related("model", "dataset", "team"), pk=pk)


def _status_context(job: Job) -> dict:
    log = job.log or ""
    return {"job": job, "log_tail": log[-LOG_TAIL_CHARS:], "log_truncated": len(log) > LOG_TAIL_CHARS}


@login_required
def job_list(request):
    mark_lost_jobs()
    jobs = (
        Job.objects.visible_to(request.user)
        .select_related("model", "team", "submitter")
        # The list shows none of the large fields: decoding 50 reports was most of this page's time.
        .defer("report", "recipe", "log", "traceback", "error")
        .annotate(has_report=ExpressionWrapper(Q(report__isnull=False), output_field=BooleanField()))
    )
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    return render(request, "jobs/job_list.html", {"page": page, "jobs": page.object_list})


@login_required
def job_new(request):
    ensure_demo_models()
    passes = [technique.describe() for technique in all_passes()]
    initial = {}
    if request.method == "GET" and (model_id := request.GET.get("model", "")).isdigit():
        initial["model"] = int(model_id)
    unavailable = pass_availability(info["name"] for info in passes)
    form = NewJobForm(request.POST or None, user=request.user, passes=passes, initial=initial, unavailable=unavailable)
    estimates = None
    if request.method == "POST" and form.is_valid() and request.POST.get("action") == "estimate":
        try:  # the Estimate button: per-step memory/time, nothing is submitted
            estimates = estimate_recipe(form.cleaned_data["model"], form.cleaned_data["recipe"])
        except RecipeError as error:
            form.add_error(None, str(error))
    elif request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = submit_job(
                request.user, data["team"], data["model"], data["recipe"], dataset=data["dataset"], name=data["name"]
            )
        except RecipeError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Job #{job.pk} queued.")
            return redirect("jobs:detail", pk=job.pk)
    status = 400 if request.method == "POST" and estimates is None else 200
    return render(
        request,
        "jobs/job_new.html",
        {
            "form": form,
            "no_team": not form.fields["team"].queryset.exists(),
            "advice": model_advice(request.user, form.fields["model"].queryset),
            "estimates": estimates,
        },
        status=status,
    )


@login_required
def job_detail(request, pk: int):
    mark_lost_jobs()  # a job whose worker stopped heartbeating shows as lost, with a Retry button
    job = _visible_job(request, pk)
    results = build_results(job.report)
    search = build_search_results(job.report)
    serving = build_serving_results(job.report)
    artifacts = list(job.artifacts.all())
    # Model cards describe a recipe variant; a search's are on its comparison page, a serving job has none.
    is_serving = serving is not None or (isinstance(job.recipe, dict) and job.recipe.get("mode") == "serving")
    card_artifacts = [] if search or is_serving else [artifact for artifact in artifacts if artifact.format != "triton"]
    context = {
        **_status_context(job),
        "results": results,
        "search": search,
        "serving": serving,
        # Memoised by the report's content: building plotly figures was most of this page's time.
        "figures": report_figures(job.report, results.report) if results and results.report.variants else None,
        "artifacts": artifacts,
        "card_artifacts": card_artifacts,
        "recipe_json": json.dumps(job.recipe, indent=2),
    }
    return render(request, "jobs/job_detail.html", context)


@login_required
def job_status(request, pk: int):
    """The live status block; htmx polls it every 2 s while the job is queued or running."""
    mark_lost_jobs()
    job = _visible_job(request, pk)
    response = render(request, "jobs/_status.html", _status_context(job))
    if job.is_final and request.headers.get("HX-Request"):
        # The page was polling an active job that just finished: reload it to show the results.
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_POST
def job_cancel(request, pk: int):
    job = cancel_job(_visible_job(request, pk))
    if job.status == Job.Status.CANCELLED:
        messages.info(request, f"Job #{job.pk} cancelled.")
    elif job.is_active:
        messages.info(request, f"Cancellation requested: job #{job.pk} stops after its current step.")
    return redirect("jobs:detail", pk=job.pk)


@login_required
@require_POST
def job_retry(request, pk: int):
    """Submit a failed, lost or cancelled job's recipe again as a new job (``services.retry_job``)."""
    job = _visible_job(request, pk)  # 404 outside the job's team
    try:
        retry = retry_job(request.user, job)
    except RetryError as error:
        messages.error(request, str(error))
        return redirect("jobs:detail", pk=job.pk)
    messages.success(request, f"Job #{retry.pk} queued: a retry of job #{job.pk}.")
    return redirect("jobs:detail", pk=retry.pk)


def _attachment_headers(response: HttpResponse) -> HttpResponse:
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@login_or_token_required
def report_json(request, pk: int):
    job = _visible_job(request, pk)
    if job.report is None:
        raise Http404("this job has no report yet")
    response = HttpResponse(json.dumps(job.report, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-report.json"'
    record_download(request, job, None, "report", file="report.json")
    return _attachment_headers(response)


@login_or_token_required
def artifact_download(request, pk: int, artifact_id: int):
    """``?purpose=deploy`` (default) needs an approval when the gate asks for one; ``inspect`` does not.

    Both are audited (webapp/reviews/downloads.py).
    """
    job = _visible_job(request, pk)
    artifact = get_object_or_404(Artifact, pk=artifact_id, job=job)
    purpose, refused = check_download(request, job, artifact)
    if refused is not None:
        return refused
    if purpose == "deploy" and (refused := deployment_refusal(request, job, artifact)) is not None:
        return refused  # a TensorRT engine only deploys on the GPU it was built for
    try:
        handle = artifact.file.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("the artifact file is missing") from None
    record_download(request, job, artifact, purpose)
    filename = get_valid_filename(f"job-{job.pk}-{artifact.name}.zip")
    response = FileResponse(handle, as_attachment=True, filename=filename, content_type="application/zip")
    response["X-InferOpt-Download-Purpose"] = purpose
    return _attachment_headers(response)


@login_required
def job_new_search(request):
    """The new-job page's "Search" tab: axes of techniques and a time budget (``mode: search``)."""
    ensure_demo_models()
    initial = {}
    if request.method == "GET" and (model_id := request.GET.get("model", "")).isdigit():
        initial["model"] = int(model_id)
    passes = [technique.describe() for technique in all_passes()]
    unavailable = pass_availability(info["name"] for info in passes)
    form = SearchJobForm(
        request.POST or None, user=request.user, initial=initial, passes=passes, unavailable=unavailable
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = submit_search_job(request.user, data["team"], data["model"], form.search_mapping(), name=data["name"])
        except RecipeError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Search job #{job.pk} queued.")
            return redirect("jobs:detail", pk=job.pk)
    no_team = not form.fields["team"].queryset.exists()
    status = 400 if request.method == "POST" else 200
    return render(request, "jobs/job_new_search.html", {"form": form, "no_team": no_team}, status=status)


@login_required
def job_new_serving(request):
    """The new-job page's "Serving" tab: a p95 budget and a dynamic batching grid (``mode: serving``)."""
    ensure_demo_models()
    initial = {}
    if request.method == "GET" and (model_id := request.GET.get("model", "")).isdigit():
        initial["model"] = int(model_id)
    form = ServingJobForm(request.POST or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = submit_serving_job(
                request.user, data["team"], data["model"], form.serving_mapping(), name=data["name"]
            )
        except RecipeError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Serving analysis job #{job.pk} queued.")
            return redirect("jobs:detail", pk=job.pk)
    no_team = not form.fields["team"].queryset.exists()
    status = 400 if request.method == "POST" else 200
    return render(request, "jobs/job_new_serving.html", {"form": form, "no_team": no_team}, status=status)
