"""Browser tests: headless Debian chromium against pytest-django's ``live_server``.

Jobs run for real: the shared ``redis_server`` / ``celery_worker`` fixtures
(``tests/support/fixtures.py``) start ``redis-server`` and a Celery worker
subprocess on the test database, and ``web_broker`` makes the live server's
``submit_job`` publish to that Redis. ``live_server`` implies a transactional
database, so the worker sees the rows the test and the server commit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from tests.support.services import RedisServer

#: Debian's chromium (``make test`` installs it); ``playwright install`` is not used.
CHROMIUM = os.environ.get("INFEROPT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: Default wait of every Playwright action and navigation (the test machines are slow).
ACTION_TIMEOUT_MS = 60_000


def pytest_configure(config: pytest.Config) -> None:
    # redis_server, celery_worker and worker_media (shared with tests/workers: one worker per session).
    config.pluginmanager.import_plugin("tests.support.fixtures")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # Lets the ``page`` fixture know at teardown whether the test body failed.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def web_broker(redis_server: RedisServer) -> Iterator[str]:
    """Make the web side (``submit_job`` → ``send_task``) publish to the test Redis server."""
    from workers.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = redis_server.url
    app.close()  # drop pooled connections to any earlier broker URL
    yield redis_server.url
    app.conf.broker_url = previous
    app.close()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch):
    """A headless chromium for one test."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium, or make test)")
    # Playwright's sync API keeps an asyncio loop registered on this thread, which makes
    # Django refuse ORM calls from the test body; they are plain synchronous calls here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            # With that loop registered, Django keeps database connections per asyncio context,
            # not per thread: the ones the test body opened are not the ones pytest-django closes,
            # and one left open stops PostgreSQL from dropping the test database.
            connections.close_all()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest, tmp_path: Path):
    """A page in a fresh context; on failure its screenshot and HTML are saved under ``tmp_path``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            try:
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                (tmp_path / "failure.html").write_text(page.content())
                print(f"page at failure ({page.url}): {tmp_path / 'failure.png'}, {tmp_path / 'failure.html'}")
            except Exception as error:  # diagnostics only; never hide the real failure
                print(f"could not save the page at failure: {error}")
        context.close()
