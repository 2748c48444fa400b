"""A job's report as something the cost panel, the comparison and the model cards can price.

Two kinds of job report exist: a recipe run (``optimizers.report.Report``) and
a search (``optimizers.search.SearchReport``, ``"kind": "search"``). Both become
a ``PricedReport``: a ``Report`` whose variants are the baseline and every
measured variant, and for each variant the ``order`` of the artifact that
packages it (None when it was not packaged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optimizers.report import Report
from optimizers.search import Candidate, SearchReport
from webapp.jobs.results import build_results
from webapp.jobs.search_results import build_search_results

#: Recipe keys of a search job that are not part of one candidate's recipe.
SEARCH_KEYS = ("mode", "axes", "budget_s")


@dataclass
class PricedReport:
    report: Report
    #: ``artifact_orders[i]`` is the ``Artifact.order`` packaging ``report.variants[i]``, or None.
    artifact_orders: list[int | None]
    search: SearchReport | None = None


def candidate_name(index: int, candidate: Candidate) -> str:
    """``c<n>-<pass>+<pass>``: the name the worker gives a search candidate's artifact."""
    return f"c{index + 1}-" + "+".join(str(step.get("pass")) for step in candidate.steps)


def priced_report(raw: Any) -> PricedReport | None:
    """None when the job has no readable report (yet)."""
    results = build_results(raw)
    if results is not None:
        if not results.report.variants:
            return None
        return PricedReport(results.report, [None, *range(1, len(results.report.variants))])
    search = build_search_results(raw)
    if search is None:
        return None
    found = search.report
    variants = [found.baseline]
    orders: list[int | None] = [None]
    for index, candidate in enumerate(found.candidates):
        if candidate.variant is not None:
            variants.append(candidate.variant.model_copy(update={"name": candidate_name(index, candidate)}))
            # The worker packages the Pareto candidates and the best passing one as order index + 1.
            packaged = candidate.on_pareto_front or index == found.best_passing
            orders.append(index + 1 if packaged else None)
    report = Report(model=found.model, task=found.task, variants=variants)
    return PricedReport(report, orders, search=found)


def candidate_report(
    search: SearchReport, index: int, recipe: dict[str, Any], library_versions: dict[str, str]
) -> Report | None:
    """One search candidate as the worker packaged it: a report of the baseline and that candidate."""
    if not 0 <= index < len(search.candidates) or search.candidates[index].variant is None:
        return None
    candidate = search.candidates[index]
    variant = candidate.variant
    assert variant is not None
    base_recipe = {key: value for key, value in recipe.items() if key not in SEARCH_KEYS}
    return Report(
        model=search.model,
        task=search.task,
        recipe={**base_recipe, "steps": candidate.steps},
        variants=[search.baseline, variant.model_copy(update={"name": candidate_name(index, candidate)})],
        gate=variant.gate,
        environment={"library_versions": library_versions} if library_versions else {},
    )
