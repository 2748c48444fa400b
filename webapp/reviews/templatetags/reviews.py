"""``{% review_context job as review %}``: what the job page needs to show its approval panel."""

from __future__ import annotations

from django import template
from django.utils import timezone

from webapp.reviews.services import (
    DEPLOYABLE_STATES,
    Decision,
    State,
    allowed_decisions,
    approval_state,
    job_audit,
    needs_review,
    review_refusal,
)

register = template.Library()

DECISION_HELP = {
    Decision.APPROVE: "the quality loss is acceptable: artifacts may be deployed",
    Decision.REJECT: "do not deploy this job's artifacts",
    Decision.OVERRIDE: "the gate failed, and you accept the artifacts for deployment anyway",
}


@register.simple_tag(takes_context=True)
def review_context(context, job) -> dict:
    """Approval state, reviews (newest first), whether the viewer may review and why not, audit entries."""
    request = context.get("request")
    user = getattr(request, "user", None)
    reviews = list(job.reviews.order_by("-created_at", "-id"))
    latest = reviews[0] if reviews else None
    state = approval_state(job, latest)
    gated = needs_review(job)
    refusal = review_refusal(user, job) if gated else None
    return {
        "needs_review": gated,
        "state": state,
        "state_label": State.LABELS[state],
        "deployable": state in DEPLOYABLE_STATES,
        "reviews": reviews,
        "latest": latest,
        "can_review": gated and refusal is None,
        "refusal": refusal,
        "decisions": [
            {"value": value, "label": Decision(value).label, "help": DECISION_HELP[value]}
            for value in allowed_decisions(job)
        ],
        "audit": list(job_audit(job)),
        "today": timezone.now().date().isoformat(),
    }


@register.filter
def audit_summary(details) -> str:
    """An audit entry's details as ``key: value`` pairs on one line."""
    if not isinstance(details, dict):
        return ""
    return ", ".join(f"{key}: {value}" for key, value in details.items() if value not in (None, ""))
