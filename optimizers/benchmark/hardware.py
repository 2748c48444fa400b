"""Names of the hardware a measurement ran on, so every benchmark row says where it was taken."""

from __future__ import annotations

import os
from pathlib import Path


def device_name(device: str) -> str:
    """``cpu: <model name> (<n> logical cores)`` for the CPU; other devices as given."""
    if device != "cpu":
        return device
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({os.cpu_count()} logical cores)"
    except OSError:
        pass
    return f"cpu ({os.cpu_count()} logical cores)"
