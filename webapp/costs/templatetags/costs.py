"""``{% cost_panel %}``: the job page's cost panel, computed server-side from the page's GET form.

The job page includes ``costs/_cost_panel.html`` (one line), which calls this
tag with the page's context (``job``, ``request``), so the jobs app needs no
cost code of its own. Recipe runs and searches are both priced (``reports.py``).
"""

from __future__ import annotations

from django import template

from optimizers import cost
from webapp.costs import services
from webapp.costs.forms import CostForm
from webapp.costs.reports import priced_report

register = template.Library()


@register.inclusion_tag("costs/_cost_panel_body.html", takes_context=True)
def cost_panel(context) -> dict:
    job = context.get("job")
    request = context.get("request")
    priced = priced_report(job.report) if job is not None else None
    if priced is None:
        return {"show": False}
    report = priced.report
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
