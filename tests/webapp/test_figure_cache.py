"""webapp.jobs.figure_cache: the job page's charts, memoised by the report's content."""

from __future__ import annotations

import copy

import pytest
from django.core.cache import cache

from optimizers.report import Report
from tests.webapp.helpers import sample_report
from webapp.jobs import charts, figure_cache


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def test_a_miss_stores_exactly_what_the_charts_module_builds():
    raw = sample_report()
    figures = figure_cache.report_figures(raw)
    assert figures == charts.report_figures(raw)
    assert cache.get(figure_cache.cache_key(raw)) == figures


def test_a_hit_is_served_from_the_cache():
    raw = sample_report()
    # A sentinel under the report's key proves the second call reads the cache instead of building.
    cache.set(figure_cache.cache_key(raw), {"chart-latency": {"sentinel": True}})
    assert figure_cache.report_figures(raw) == {"chart-latency": {"sentinel": True}}


def test_the_parsed_report_gives_the_same_figures():
    raw = sample_report()
    assert figure_cache.report_figures(raw, Report.model_validate(raw)) == charts.report_figures(raw)


def test_a_different_report_gets_its_own_entry():
    raw = sample_report()
    changed = copy.deepcopy(raw)
    changed["variants"][1]["benchmark"]["1"]["p50_ms"] = 12.5
    assert figure_cache.cache_key(raw) != figure_cache.cache_key(changed)
    figure_cache.report_figures(raw)
    assert figure_cache.report_figures(changed) == charts.report_figures(changed)
    assert figure_cache.report_figures(raw) == charts.report_figures(raw)


def test_warming_is_skipped_where_no_other_process_reads_the_cache():
    # The test settings keep Django's per-process memory cache: a worker's copy would help no page.
    raw = sample_report()
    assert not figure_cache.cache_is_shared()
    assert figure_cache.warm(raw) is False
    assert cache.get(figure_cache.cache_key(raw)) is None
