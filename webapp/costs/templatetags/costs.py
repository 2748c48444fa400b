"""``{% cost_panel %}``: the job page's cost panel, computed server-side from the page's GET form.

The job page includes ``costs/_cost_panel.html`` (one line), which calls this
tag with the page's context (``job``, ``results``, ``request``), so the jobs app
needs no cost code of its own.
"""

from __future__ import annotations

from django import template

from optimizers import cost
from webapp.costs import services
from webapp.costs.forms import CostForm

register = template.Library()


@register.inclusion_tag("costs/_cost_panel_body.html", takes_context=True)
def cost_panel(context) -> dict:
    job = context.get("job")
    results = context.get("results")
    request = context.get("request")
    if job is None or results is None or not results.report.variants:
        return {"show": False}
    report = results.report
    batch_sizes = cost.measured_batch_sizes(report)
    instances = services.instances_for([job.team])
    unit = cost.unit_for_task(report.task)
    form = CostForm(
        request.GET if request is not None else None,
        instances=instances,
        batch_sizes=batch_sizes,
        report=report,
        unit=unit,
    )
    choice = form.choice() if batch_sizes else None
    breakdown = services.breakdown_for(report, choice, job.optimization_seconds) if choice else None
    return {
        "show": True,
        "job": job,
        "form": form,
        "choice": choice,
        "breakdown": breakdown,
        "unit": unit,
        "no_benchmark": not batch_sizes,
        "no_prices": not instances,
        "query": request.GET.urlencode() if request is not None else "",
    }
