"""plotly.js and htmx come from local static files (the machines are offline: no CDN)."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from tests.webapp.helpers import client_for


def test_plotly_is_found_in_the_installed_package_and_htmx_in_the_repo():
    assert finders.find("vendor/plotly.min.js").endswith("package_data/plotly.min.js")
    assert finders.find("vendor/htmx.min.js").endswith("webapp/static/vendor/htmx.min.js")
    assert finders.find("vendor/widgetbundle.js") is None  # only plotly.min.js is exposed


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/static/vendor/plotly.min.js", "/static/vendor/htmx.min.js", "/static/js/charts.js"])
def test_static_files_are_served_by_whitenoise(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]
    response.close()


@pytest.mark.django_db
def test_pages_reference_no_external_hosts(owner):
    page = client_for(owner).get(reverse("jobs:list")).content.decode()
    assert "/static/vendor/htmx.min.js" in page
    assert "https://" not in page and "http://" not in page
