"""The job page's result charts, memoised in Django's cache by the content of report.json.

``charts.report_figures`` is a pure function of a report, and a job's report does not change once
written, yet building the plotly figures was most of a finished job's page time: plotly validates
every property and copies its template for each figure, ~0.4 s of CPU per page for a two-variant
report on the 2-core load-test machine (``benchmarks/load.py``). The key is the report's content hash
plus the chart code and plotly version, so an entry can never be stale and nothing invalidates it; a
cold or cleared cache only costs time.

Where the cache is shared (Redis: ``INFEROPT_CACHE_URL``, production, ``make run``), the worker that
finishes a job builds its figures before it marks the job succeeded (``warm``), so no page request
builds them: with a per-process cache each web process paid for each job once, ~0.4 s on a request.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import plotly
from django.core.cache import cache, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from optimizers.hashing import sha256_json
from optimizers.report import Report
from webapp.jobs import charts

logger = logging.getLogger(__name__)

#: How long an entry lives; the key changes with the report, so this only bounds memory.
TIMEOUT_S = 24 * 3600
#: Changes whenever the chart code or plotly does, so a deployment never serves older figures.
CODE_VERSION = hashlib.sha256(Path(charts.__file__).read_bytes() + plotly.__version__.encode()).hexdigest()[:16]


def cache_key(raw_report: dict[str, Any]) -> str:
    return f"inferopt:report-figures:{CODE_VERSION}:{sha256_json(raw_report)}"


def report_figures(raw_report: dict[str, Any], parsed: Report | None = None) -> dict[str, dict[str, Any]]:
    """``charts.report_figures`` of ``raw_report`` (a job's stored report.json), from the cache when there.

    ``parsed``, when given, must be ``Report.model_validate(raw_report)``: it saves parsing again on a miss.
    """
    key = cache_key(raw_report)
    figures = cache.get(key)
    if figures is None:
        figures = charts.report_figures(parsed if parsed is not None else raw_report)
        cache.set(key, figures, TIMEOUT_S)
    return figures


def cache_is_shared() -> bool:
    """Whether other processes read this process's cache (not a per-process memory or dummy cache)."""
    return not isinstance(caches["default"], LocMemCache | DummyCache)


def warm(raw_report: dict[str, Any]) -> bool:
    """Build and store the figures of ``raw_report`` when the cache is shared; whether it did.

    For workers, with the report exactly as the job row will store it. Never raises: a failure only
    leaves the first page view to build the figures, so it is logged, not passed on.
    """
    if not cache_is_shared():
        return False
    try:
        report_figures(raw_report)
    except Exception:
        logger.warning("could not pre-build the job page's figures", exc_info=True)
        return False
    return True
