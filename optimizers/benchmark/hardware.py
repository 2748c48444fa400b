"""Names of the hardware a measurement ran on, so every benchmark row says where it was taken."""

from __future__ import annotations

import os
from pathlib import Path


def device_name(device: str) -> str:
    """``cpu: <model name> (<n> logical cores)``; ``cuda: <GPU name> (compute capability X.Y)``; others as given.

    Called in the (isolated) benchmark process, where touching CUDA is fine.
    """
    if device.startswith("cuda"):
        return _cuda_name(device)
    if device != "cpu":
        return device
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({os.cpu_count()} logical cores)"
    except OSError:
        pass
    return f"cpu ({os.cpu_count()} logical cores)"


def _cuda_name(device: str) -> str:
    try:
        import torch

        if torch.cuda.is_available():
            index = torch.device(device).index or 0
            major, minor = torch.cuda.get_device_capability(index)
            return f"cuda: {torch.cuda.get_device_name(index)} (compute capability {major}.{minor})"
    except Exception:  # a name is a label: never fail a benchmark over it
        pass
    return device
