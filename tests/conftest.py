"""Fixtures shared by every test folder. Keep this small and generic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def data_dir(tmp_path: Path, settings: Any) -> Path:
    """Point the data folder (media, work dirs, upload temp files) at ``tmp_path``."""
    data = tmp_path / "data"
    for sub in ("media", "work", "tmp"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    settings.INFEROPT_DATA_DIR = data
    settings.MEDIA_ROOT = data / "media"
    settings.INFEROPT_WORK_DIR = data / "work"
    settings.FILE_UPLOAD_TEMP_DIR = data / "tmp"
    return data
