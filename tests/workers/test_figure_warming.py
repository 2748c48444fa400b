"""Workers pre-build a finished job's page figures in the shared Redis cache (``figure_cache.warm``)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from tests.support.services import RedisServer
from tests.webapp.helpers import sample_report
from webapp.deployment import redis_cache
from webapp.jobs import charts, figure_cache


@pytest.fixture
def shared_cache(redis_server: RedisServer, settings: Any) -> None:
    """This process's cache = the Redis database the session's Celery worker writes (``INFEROPT_CACHE_URL``)."""
    settings.CACHES = redis_cache(redis_server.cache_url)
    cache.clear()
    yield
    cache.clear()


def test_warm_stores_what_the_page_would_build(shared_cache):
    raw = sample_report()
    assert figure_cache.cache_is_shared()
    assert figure_cache.warm(raw) is True
    assert cache.get(figure_cache.cache_key(raw)) == charts.report_figures(raw)


def test_a_report_the_charts_cannot_read_is_logged_not_raised(shared_cache, caplog):
    broken = {**sample_report(), "variants": "not a list"}
    assert figure_cache.warm(broken) is False
    assert cache.get(figure_cache.cache_key(broken)) is None
    assert "could not pre-build" in caplog.text
