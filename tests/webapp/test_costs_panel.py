"""The cost panel on the job page: server-side figures with formulas and inputs, hardware warnings."""

from __future__ import annotations

import datetime
import html
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from tests.optimizers.reports import fixed_report
from tests.webapp.helpers import client_for
from webapp.costs.models import InstanceType
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def priced_job(make_job, team, owner) -> Job:
    """A job whose benchmark ran on the CPU of AWS c7i (Xeon Platinum 8488C) for one hour of wall time."""
    return make_job(team, owner, status=Job.Status.SUCCEEDED, report=fixed_report(), gate_outcome="needs_approval",
                    optimization_seconds=3600.0)  # fmt: skip


def instance(name: str) -> InstanceType:
    return InstanceType.objects.get(team=None, name=name)


def page(client, job, **params) -> str:
    response = client.get(reverse("jobs:detail", args=[job.pk]), {f"cost-{k}": v for k, v in params.items()})
    assert response.status_code == 200
    return visible_text(response.content.decode())


def visible_text(markup: str) -> str:
    """The page as text: tags dropped, entities decoded, whitespace folded (links keep their href)."""
    markup = re.sub(r'<a [^>]*href="([^"]*)"[^>]*>', r" \1 ", markup)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split()).replace(" .", ".")


def test_defaults_price_on_the_cheapest_instance_matching_the_benchmark_hardware(priced_job, owner):
    text = page(client_for(owner), priced_job)
    assert "Priced on AWS c7i.xlarge at $0.18/h" in text
    assert "Different hardware" not in text
    # Batch 8 (largest measured): 40, 50 and 100 requests/s → $1.25, $1.00 and $0.50 per 1M at $0.18/h.
    assert "$0.18/h ÷ (40 requests/s × 3600) × 1,000,000 = $1.25" in text
    assert "$0.18/h ÷ (100 requests/s × 3600) × 1,000,000 = $0.50" in text
    assert "hourly price ÷ (throughput × 3600 s/h) × 1,000,000 requests" in text
    # The job itself: one hour on the cheapest CPU worker.
    assert "3,600 s ÷ 3600 × $0.18/h (AWS c7i.xlarge) = $0.18" in text
    # Break-even for the INT8 candidate: $0.18 ÷ ($1.25 − $0.50) × 1M = 240 k requests.
    assert "= 240 k requests" in text
    assert text.count("enter traffic") >= 3


def test_user_choices_change_instance_batch_traffic_and_worker(priced_job, owner):
    text = page(
        client_for(owner), priced_job, instance=instance("AWS c7i.2xlarge").pk, batch=1, traffic="10000000",
        worker=instance("AWS g6.xlarge").pk,
    )  # fmt: skip
    assert "Priced on AWS c7i.2xlarge at $0.36/h" in text
    # Batch 1: 50, 62.5 and 125 requests/s at $0.36/h.
    assert "$0.36/h ÷ (125 requests/s × 3600) × 1,000,000 = $0.80" in text
    assert "10 M ÷ 1,000,000 × $0.80 = $8.00" in text  # monthly cost of the candidate
    assert "$20.00 − $8.00" in text  # monthly saving vs the baseline's $2.00 per 1M
    assert "3,600 s ÷ 3600 × $0.80/h (AWS g6.xlarge) = $0.80" in text
    # $0.80 ÷ ($2.00 − $0.80) × 1M = 667 k requests: about 2 days at 10 M a month.
    assert "667 k requests (≈ 2 days at 10 M/month)" in text


def test_gpu_instance_for_a_cpu_benchmark_is_flagged(priced_job, owner):
    text = page(client_for(owner), priced_job, instance=instance("AWS g5.xlarge").pk, batch=8)
    assert "Different hardware:" in text
    assert "measured on CPU (cpu: Intel(R) Xeon(R) Platinum 8488C (2 logical cores)) but AWS g5.xlarge" in text
    assert "other hardware" in text


def test_benchmark_without_a_device_is_flagged_too(finished_job, owner):
    text = page(client_for(owner), finished_job)
    assert "the benchmark did not record its device" in text


def test_invalid_choices_fall_back_to_the_defaults(priced_job, owner):
    text = page(client_for(owner), priced_job, instance="999999", batch=3, traffic="-5")
    assert "Some choices were invalid" in text
    assert "Priced on AWS c7i.xlarge" in text


def test_another_teams_prices_cannot_be_chosen(priced_job, owner, other_team):
    foreign = InstanceType.objects.create(team=other_team, name="their-box", hourly_price=Decimal("0.01"),
                                          device="x", kind="cpu", price_date=datetime.date(2026, 1, 1))  # fmt: skip
    text = page(client_for(owner), priced_job, instance=foreign.pk, batch=8)
    assert "their-box" not in text
    assert "Some choices were invalid" in text


def test_team_prices_are_offered_for_the_teams_jobs(priced_job, owner, team):
    InstanceType.objects.create(team=team, name="our-box", hourly_price=Decimal("0.05"),
                                device="Intel Xeon Platinum 8488C", kind="cpu",
                                price_date=datetime.date(2026, 11, 1))  # fmt: skip
    text = page(client_for(owner), priced_job)
    assert "Priced on our-box at $0.05/h" in text  # the cheapest matching row is the team's own


def test_job_page_links_to_compare_and_model_cards(finished_job, owner):
    text = page(client_for(owner), finished_job)
    assert f"{reverse('costs:compare')}?jobs={finished_job.pk}" in text
    artifact = finished_job.artifacts.last()
    assert reverse("costs:card_html", args=[finished_job.pk, artifact.pk]) in text
    assert reverse("costs:card_md", args=[finished_job.pk, artifact.pk]) in text


def test_no_panel_for_a_job_without_results(make_job, team, owner):
    job = make_job(team, owner)
    response = client_for(owner).get(reverse("jobs:detail", args=[job.pk]))
    assert 'id="cost"' not in response.content.decode() and "Priced on" not in visible_text(response.content.decode())
