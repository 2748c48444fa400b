"""Review pages: the queue of jobs awaiting review, the review action, the team audit log."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webapp.accounts.services import teams_of
from webapp.jobs.models import Job
from webapp.jobs.results import build_results
from webapp.reviews.forms import AuditFilterForm
from webapp.reviews.models import Review
from webapp.reviews.services import ReviewError, awaiting_review, review_job, review_refusal, team_audit

QUEUE_PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 100


@login_required
def queue(request):
    """Jobs of the user's teams awaiting review (or re-review after an expired approval), oldest first."""
    jobs = awaiting_review(Job.objects.visible_to(request.user)).select_related("team", "model", "submitter")
    page = Paginator(jobs, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {"job": job, "results": build_results(job.report), "refusal": review_refusal(request.user, job)}
        for job in page.object_list
    ]
    return render(request, "reviews/queue.html", {"page": page, "rows": rows})


@login_required
@require_POST
def review(request, pk: int):
    """The approval panel's form: decision, reason, optional expiry date."""
    job = get_object_or_404(Job.objects.visible_to(request.user).select_related("team"), pk=pk)
    panel = reverse("jobs:detail", args=[job.pk]) + "#approval"
    try:
        made = review_job(
            request.user,
            job,
            request.POST.get("decision", ""),
            request.POST.get("reason", ""),
            request.POST.get("expires_on") or None,
        )
    except ReviewError as error:
        if error.kind == ReviewError.FORBIDDEN:
            context = {"title": "Review refused", "message": error.message, "job": job}
            return render(request, "reviews/refused.html", context, status=403)
        messages.error(request, f"Review not recorded: {error.message}.")
        return redirect(panel)
    verb = {Review.Decision.APPROVE: "approved", Review.Decision.REJECT: "rejected"}.get(
        made.decision, "accepted despite its failed gate"
    )
    messages.success(request, f"Job #{job.pk} {verb}.")
    return redirect(panel)


@login_required
def audit(request):
    """The audit log of the user's teams, newest first, filterable by team, action, user and job."""
    teams = list(teams_of(request.user))
    form = AuditFilterForm(request.GET or None, teams=teams)
    filters = form.cleaned_data if form.is_valid() else {}
    selected = [team for team in teams if team.name == filters.get("team")] if filters.get("team") else teams
    entries = team_audit(
        selected,
        action=filters.get("action") or "",
        username=(filters.get("user") or "").strip(),
        job_id=filters.get("job"),
    )
    page = Paginator(entries, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    team_names = {team.pk: team.name for team in teams}
    entries = list(page.object_list)
    for entry in entries:
        entry.team_name = team_names.get(entry.team_id, "")
    context = {"form": form, "page": page, "entries": entries, "query": query.urlencode(), "many_teams": len(teams) > 1}
    return render(request, "reviews/audit.html", context)
