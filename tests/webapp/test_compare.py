"""The comparison page: variants of one job and jobs of one model, Pareto fronts, team scoping; its charts."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from tests.optimizers.reports import fixed_report
from tests.webapp.helpers import client_for
from webapp.catalog.models import ModelEntry
from webapp.costs.charts import CHART_IDS, Point, compare_figures, tradeoff_figure
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db
COMPARE = "/jobs/compare/"


@pytest.fixture
def job_a(make_job, team, owner) -> Job:
    return make_job(team, owner, name="nightly a", status=Job.Status.SUCCEEDED, report=fixed_report(),
                    optimization_seconds=600.0)  # fmt: skip


@pytest.fixture
def job_b(make_job, team, owner) -> Job:
    """Same model; its INT8 variant is slower than job A's but keeps more quality."""
    report = fixed_report()
    candidate = report["variants"][2]
    candidate["metrics"]["cosine"] = 0.997
    for stats in candidate["benchmark"].values():
        stats["p50_ms"] *= 1.5
        stats["throughput_per_s"] /= 1.5
    return make_job(team, owner, name="nightly b", status=Job.Status.SUCCEEDED, report=report)


def table_rows(markup: str) -> list[str]:
    body = markup.split('id="compare-table"', 1)[1].split("</tbody>", 1)[0]
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in body.split("<tr")[2:]]


def figures(markup: str) -> dict:
    found = re.findall(r'<script id="(chart-[a-z-]+)-data" type="application/json">(.*?)</script>', markup, re.S)
    return {chart_id: json.loads(text) for chart_id, text in found}


def test_variants_of_one_job_with_pareto_flags_and_charts(job_a, owner):
    response = client_for(owner).get(COMPARE, {"jobs": str(job_a.pk)})
    assert response.status_code == 200
    markup = response.content.decode()
    rows = table_rows(markup)
    assert len(rows) == 3
    baseline, export, int8 = rows
    # cosine 1.0 / 1.0 / 0.993; p50 at batch 8 200 / 160 / 80 ms; size 90 / 91 / 23 MiB.
    assert "baseline" in baseline and "size" in baseline and "latency" not in baseline  # smaller than the export
    assert "all four" in export and "latency" in export and "cost" in export
    assert "all four" in int8 and "latency" in int8 and "size" in int8 and "cost" in int8
    assert "$1.25" in baseline and "$0.50" in int8  # per 1M on the default AWS c7i.xlarge at batch 8
    charts = figures(markup)
    assert tuple(charts) == CHART_IDS
    front = charts["chart-latency-quality"]["data"][1]
    assert front["name"] == "Pareto front"
    assert front["text"] == [f"#{job_a.pk} ort_quantize_dynamic", f"#{job_a.pk} onnx_export"]


def test_jobs_of_the_same_model_are_compared_together(job_a, job_b, owner):
    markup = client_for(owner).get(COMPARE, {"jobs": f"{job_a.pk},{job_b.pk}", "batch": "1"}).content.decode()
    rows = table_rows(markup)
    assert len(rows) == 6
    assert f"#{job_b.pk}" in rows[5] and "0.997" in rows[5]
    # B's INT8 (cosine 0.997, 12 ms) and A's INT8 (0.993, 8 ms) are both on the latency/quality front.
    assert "latency" in rows[2] and "latency" in rows[5]


def test_repeated_jobs_params_and_metric_and_instance_choices(job_a, job_b, owner):
    from webapp.costs.models import InstanceType

    g5 = InstanceType.objects.get(team=None, name="AWS g5.xlarge")
    response = client_for(owner).get(
        f"{COMPARE}?jobs={job_a.pk}&jobs={job_b.pk}&metric=recall_at_1&instance={g5.pk}&batch=8"
    )
    markup = response.content.decode()
    assert response.status_code == 200
    assert '<option value="recall_at_1" selected>' in markup
    assert "Different hardware:" in markup and "AWS g5.xlarge" in markup


def test_other_jobs_of_the_model_are_offered(job_a, job_b, owner):
    markup = client_for(owner).get(COMPARE, {"jobs": str(job_a.pk)}).content.decode()
    assert 'id="add-jobs"' in markup and f'name="jobs" value="{job_b.pk}"' in markup


def test_jobs_of_different_models_are_refused(job_a, make_job, team, owner):
    other_model = ModelEntry.objects.create(team=team, name="other", reference="/x", task="feature-extraction",
                                            source="upload")  # fmt: skip
    other = Job.objects.create(team=team, submitter=owner, name="other", model=other_model, recipe={},
                               status=Job.Status.SUCCEEDED, report=fixed_report())  # fmt: skip
    response = client_for(owner).get(COMPARE, {"jobs": f"{job_a.pk},{other.pk}"})
    assert response.status_code == 400
    assert "same model" in response.content.decode()


def test_outsider_gets_404_even_mixed_with_their_own_job(job_a, make_job, other_team, outsider):
    own = make_job(other_team, outsider, status=Job.Status.SUCCEEDED, report=fixed_report())
    client = client_for(outsider)
    assert client.get(COMPARE, {"jobs": str(job_a.pk)}).status_code == 404
    assert client.get(COMPARE, {"jobs": f"{own.pk},{job_a.pk}"}).status_code == 404
    assert client.get(COMPARE, {"jobs": str(own.pk)}).status_code == 200


def test_teammate_compares_the_owners_jobs(job_a, teammate):
    assert client_for(teammate).get(COMPARE, {"jobs": str(job_a.pk)}).status_code == 200


def test_bad_or_missing_job_numbers(job_a, owner):
    client = client_for(owner)
    assert client.get(COMPARE, {"jobs": "1;drop"}).status_code == 400
    response = client.get(COMPARE)
    assert response.status_code == 200 and "Compare selected" in response.content.decode()
    assert client.get(COMPARE, {"jobs": ",".join(str(n) for n in range(1, 30))}).status_code == 400


def test_a_job_without_results_is_left_out(job_a, make_job, team, owner):
    running = make_job(team, owner, status=Job.Status.RUNNING)
    markup = client_for(owner).get(COMPARE, {"jobs": f"{job_a.pk},{running.pk}"}).content.decode()
    assert f"Job #{running.pk} has no results yet" in markup
    assert len(table_rows(markup)) == 3


def test_anonymous_users_log_in_first(client, job_a):
    response = client.get(COMPARE, {"jobs": str(job_a.pk)})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_job_list_has_compare_checkboxes_for_jobs_with_results(job_a, make_job, team, owner):
    queued = make_job(team, owner)
    markup = client_for(owner).get(reverse("jobs:list")).content.decode()
    assert f'action="{COMPARE}"' in markup
    assert f'name="jobs" value="{job_a.pk}" form="compare-form"' in markup
    assert f'value="{queued.pk}" form="compare-form"' not in markup


# --- charts (pure functions) -------------------------------------------------------------------


def test_tradeoff_figure_highlights_the_front_in_x_order():
    points = [Point("a", 10, 0.90), Point("b", 5, 0.80), Point("c", 12, 0.85), Point("d", 20, 0.95),
              Point("missing", None, 0.99)]  # fmt: skip
    figure = tradeoff_figure(points, title="t", x_title="ms", y_title="cosine")
    other, front = figure["data"]
    assert other["text"] == ["c"] and other["x"] == [12]
    assert front["text"] == ["b", "a", "d"] and front["x"] == [5, 10, 20]
    assert front["marker"]["symbol"] == "diamond"
    assert figure["layout"]["yaxis"]["title"]["text"] == "cosine (higher is better)"
    json.dumps(figure)


def test_tradeoff_figure_for_a_lower_is_better_metric():
    points = [Point("a", 10, 5.0), Point("b", 5, 6.0), Point("c", 12, 7.0)]
    figure = tradeoff_figure(points, title="t", x_title="ms", y_title="perplexity", y_direction="min")
    assert figure["data"][1]["text"] == ["b", "a"]
    assert "lower is better" in figure["layout"]["yaxis"]["title"]["text"]


def test_compare_figures_are_keyed_by_chart_id():
    charts = compare_figures(
        ["x", "y"], quality=[1.0, 0.9], latency_ms=[10.0, 5.0], size_mib=[90.0, 90.0], cost_per_million=[2.0, None],
        metric="cosine", direction="max", batch_size=8, cost_label="$ per 1M",
    )  # fmt: skip
    assert tuple(charts) == CHART_IDS
    assert charts["chart-size-quality"]["data"][1]["text"] == ["x"]  # same size, better quality
    assert charts["chart-cost-quality"]["data"][1]["text"] == ["x"]  # y has no cost
