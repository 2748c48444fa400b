"""Pages: the price list (admins edit), the comparison across variants and jobs, live model cards."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import get_valid_filename
from django.views.decorators.http import require_POST

from optimizers import cost
from webapp.costs import cards, compare, services
from webapp.costs.charts import compare_figures
from webapp.costs.forms import CostForm, InstanceTypeForm
from webapp.costs.models import InstanceType
from webapp.jobs.access import login_or_token_required
from webapp.jobs.models import Artifact, Job

#: Most jobs one comparison takes (each adds its variants to every chart).
MAX_COMPARED_JOBS = 20


# --- price list -------------------------------------------------------------------------------


@login_required
def instance_list(request):
    rows = InstanceType.objects.visible_to(request.user).select_related("team")
    editable = {row.pk for row in rows if services.can_edit(request.user, row)}
    return render(
        request,
        "costs/instance_list.html",
        {"rows": rows, "editable": editable, "can_add": services.can_add(request.user)},
    )


@login_required
def instance_new(request):
    if not services.can_add(request.user):
        raise PermissionDenied("only team admins can add instance types")
    form = InstanceTypeForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        row = form.save(commit=False)
        row.created_by = request.user
        row.save()
        messages.success(request, f"Added {row.name}.")
        return redirect("costs:instance_list")
    return render(request, "costs/instance_form.html", {"form": form}, status=400 if request.method == "POST" else 200)


def _visible_instance(request, pk: int) -> InstanceType:
    return get_object_or_404(InstanceType.objects.visible_to(request.user), pk=pk)


@login_required
def instance_edit(request, pk: int):
    row = _visible_instance(request, pk)
    if not services.can_edit(request.user, row):
        raise PermissionDenied("global prices are edited by staff, a team's prices by its admins")
    form = InstanceTypeForm(request.POST or None, instance=row, user=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Saved {row.name}.")
        return redirect("costs:instance_list")
    return render(
        request, "costs/instance_form.html", {"form": form, "row": row}, status=400 if request.method == "POST" else 200
    )


@login_required
@require_POST
def instance_delete(request, pk: int):
    row = _visible_instance(request, pk)
    if not services.can_edit(request.user, row):
        raise PermissionDenied("global prices are edited by staff, a team's prices by its admins")
    row.delete()
    messages.info(request, f"Deleted {row.name}.")
    return redirect("costs:instance_list")


# --- comparison -------------------------------------------------------------------------------


def _job_ids(values: list[str]) -> list[int] | None:
    """``?jobs=1,2&jobs=3`` → [1, 2, 3] (first occurrence order); None when one is not a number."""
    ids: dict[int, None] = {}
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                return None
            ids.setdefault(int(part), None)
    return list(ids)


def _int_param(request, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


@login_required
def compare_view(request):
    ids = _job_ids(request.GET.getlist("jobs"))
    context: dict = {"ids": ids or [], "jobs_param": ",".join(str(pk) for pk in ids or [])}
    if ids is None:
        context["error"] = "jobs must be job numbers, e.g. ?jobs=3,5"
        return render(request, "costs/compare.html", context, status=400)
    if not ids:
        return render(request, "costs/compare.html", context)
    if len(ids) > MAX_COMPARED_JOBS:
        context["error"] = f"compare at most {MAX_COMPARED_JOBS} jobs at once"
        return render(request, "costs/compare.html", context, status=400)
    found = {
        job.pk: job for job in Job.objects.visible_to(request.user).filter(pk__in=ids).select_related("model", "team")
    }
    if len(found) != len(ids):
        raise Http404("no such job")
    jobs = [found[pk] for pk in ids]
    context["jobs"] = jobs
    if len({job.model_id for job in jobs}) > 1:
        names = ", ".join(f"#{job.pk} {job.model.name}" for job in jobs)
        context["error"] = f"a comparison is across jobs of the same model; these optimize different models: {names}"
        return render(request, "costs/compare.html", context, status=400)

    pairs = compare.reports_of(jobs)
    reports = [priced.report for _, priced in pairs]
    context["without_results"] = [job for job in jobs if job.pk not in {j.pk for j, _ in pairs}]
    context["others"] = (
        Job.objects.visible_to(request.user)
        .filter(model=jobs[0].model, status=Job.Status.SUCCEEDED)
        .exclude(pk__in=ids)
        .select_related("team")[:50]
    )
    if not pairs:
        return render(request, "costs/compare.html", context)

    metrics = compare.quality_metrics(reports)
    metric = request.GET.get("metric") if request.GET.get("metric") in metrics else compare.default_metric(metrics)
    batch_sizes = sorted({b for report in reports for b in cost.measured_batch_sizes(report)})
    batch = _int_param(request, "batch")
    batch = batch if batch in batch_sizes else (batch_sizes[-1] if batch_sizes else 1)
    instances = services.instances_for({job.team for job in jobs})
    chosen = _int_param(request, "instance")
    instance = next((row for row in instances if row.pk == chosen), None) or services.default_instance(
        instances, reports[0]
    )
    if instance is None:
        context["error"] = "the price list is empty: add an instance type first"
        return render(request, "costs/compare.html", context)
    rows = compare.build_rows(pairs, metric=metric, batch_size=batch, instance=instance.as_instance())
    unit = cost.unit_for_task(reports[0].task)
    direction = compare.metric_direction(metric) if metric else "max"
    context.update(
        rows=rows,
        metrics=metrics,
        metric=metric,
        direction=direction,
        batch_sizes=batch_sizes,
        batch=batch,
        instances=instances,
        instance=instance,
        unit=unit,
        hardware_warnings=list(dict.fromkeys(row.hardware.reason for row in rows if not row.hardware.matches)),
        figures=compare_figures(
            [row.label for row in rows],
            quality=[row.quality for row in rows],
            latency_ms=[row.latency_ms for row in rows],
            size_mib=[row.size_mib for row in rows],
            cost_per_million=[row.cost.value if row.cost else None for row in rows],
            metric=metric or "quality",
            direction=direction,
            batch_size=batch,
            cost_label=f"$ per 1M {unit} on {instance.name}",
        )
        if metric
        else None,
    )
    return render(request, "costs/compare.html", context)


# --- model cards ------------------------------------------------------------------------------


def _card(request, pk: int, artifact_id: int):
    job = get_object_or_404(Job.objects.visible_to(request.user).select_related("team", "dataset"), pk=pk)
    artifact = get_object_or_404(Artifact, pk=artifact_id, job=job)
    found = cards.report_for_artifact(job, artifact)
    if found is None:
        raise Http404("the job's report has no variant for this artifact")
    report, index = found
    batch_sizes = cost.measured_batch_sizes(report)
    form = CostForm(
        request.GET,
        instances=services.instances_for([job.team]),
        batch_sizes=batch_sizes,
        report=report,
        unit=cost.unit_for_task(report.task),
    )
    card = cards.live_card(job, artifact, report, index, form.choice() if batch_sizes else None)
    return job, artifact, card


@login_or_token_required
def card_markdown(request, pk: int, artifact_id: int):
    job, artifact, card = _card(request, pk, artifact_id)
    response = HttpResponse(card.to_markdown(), content_type="text/markdown; charset=utf-8")
    filename = get_valid_filename(f"job-{job.pk}-{artifact.name}-MODEL_CARD.md")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
def card_html(request, pk: int, artifact_id: int):
    job, artifact, card = _card(request, pk, artifact_id)
    return render(
        request,
        "costs/model_card.html",
        {"job": job, "artifact": artifact, "card": card, "query": request.GET.urlencode()},
    )
