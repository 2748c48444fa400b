"""Serve ``plotly.min.js`` from the installed plotly package (no 4 MB copy in git, no CDN).

The file appears as ``vendor/plotly.min.js`` to ``{% static %}``, WhiteNoise and
``collectstatic``. Only that one file is exposed, not the package's data sets.
"""

from __future__ import annotations

from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_STATIC_PATH = "vendor/plotly.min.js"
_FILE_NAME = "plotly.min.js"


def plotly_package_data() -> Path:
    return Path(plotly.__file__).resolve().parent / "package_data"


class PlotlyFinder(BaseFinder):
    """A staticfiles finder for exactly one file: the installed plotly.js bundle."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=plotly_package_data())
        # collectstatic joins this prefix to the listed name.
        self.storage.prefix = "vendor"

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path != PLOTLY_STATIC_PATH:
            return []  # like Django's finders: an empty list (not None) when there is no match
        match = str(plotly_package_data() / _FILE_NAME)
        return [match] if find_all else match

    def list(self, ignore_patterns):
        if self.storage.exists(_FILE_NAME):
            yield _FILE_NAME, self.storage
