""" "Measure before optimizing" on the new-job page: latest profile and a starting recipe per model.

The profile comes from the newest finished job of the user's teams on that
model whose report carries one; the recommendation from
``optimizers.recommend`` (one rule table). No profile yet → the page nudges
to run a baseline-only job first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optimizers.recommend import ModelFacts, Recommendation, recommend
from webapp.accounts.services import teams_of
from webapp.jobs.models import Job


@dataclass
class ModelAdvice:
    model: Any
    profile: dict[str, Any] | None
    profile_job: Job | None
    condition: str
    recommendation: Recommendation

    @property
    def top_ops(self) -> list[dict[str, Any]]:
        return (self.profile or {}).get("top_ops", [])[:3]


def model_advice(user, models) -> list[ModelAdvice]:
    """One entry per model in ``models`` (already filtered to what ``user`` may see)."""
    advice = []
    for model in models:
        job = (
            Job.objects.filter(team__in=teams_of(user), model=model, status=Job.Status.SUCCEEDED)
            .exclude(report__isnull=True)
            .order_by("-finished_at")
            .first()
        )
        profile = (job.report or {}).get("profile") if job else None
        shares = (profile or {}).get("shares", {})
        outside = shares.get("preprocess", 0.0) + shares.get("postprocess", 0.0) if shares else None
        rule, recommendation = recommend(ModelFacts(task=model.task, format=model.format, outside_model_share=outside))
        advice.append(ModelAdvice(model, profile, job if profile else None, rule.when, recommendation))
    return advice
