"""``digits-cnn``: the small convolutional classifier of ``zoo:digits-cnn`` (8×8 grey digits).

Architecture (every size comes from ``config.json``, so a structurally pruned or
distilled variant with other channel counts loads the same way)::

    pixel_values (N, C, H, W) float32
    features:   [Conv2d(c_in → c_i, 3×3, padding 1) → ReLU] for each c_i in ``channels``,
                then MaxPool2d(2)
    classifier: Flatten → Linear(c_last · H/2 · W/2 → hidden) → ReLU → Linear(hidden → num_classes)
    → logits (N, num_classes)

Module names are stable (``features.<2i>`` is the i-th convolution,
``classifier.1`` / ``classifier.3`` the two Linear layers): the safetensors keys
and passes that edit the model by name rely on them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ARCHITECTURE = "digits-cnn"


class DigitsCNN(nn.Module):
    """Conv stack + two-layer classifier; ``forward(pixel_values) -> logits``."""

    def __init__(
        self,
        channels: list[int] | tuple[int, ...] = (16, 32),
        hidden: int = 64,
        num_classes: int = 10,
        input_shape: list[int] | tuple[int, int, int] = (1, 8, 8),
    ) -> None:
        super().__init__()
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive integers, got {channels!r}")
        if hidden < 1 or num_classes < 2:
            raise ValueError(f"hidden must be ≥ 1 and num_classes ≥ 2, got {hidden}, {num_classes}")
        in_channels, height, width = (int(v) for v in input_shape)
        layers: list[nn.Module] = []
        previous = in_channels
        for count in channels:
            layers += [nn.Conv2d(previous, int(count), kernel_size=3, padding=1), nn.ReLU()]
            previous = int(count)
        layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        flat = previous * (height // 2) * (width // 2)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, int(hidden)), nn.ReLU(), nn.Linear(int(hidden), int(num_classes))
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(pixel_values))


def default_config(**overrides: Any) -> dict[str, Any]:
    """The ``config.json`` of a digits CNN (``inferopt_architecture`` plus the constructor's arguments)."""
    config: dict[str, Any] = {
        "inferopt_architecture": ARCHITECTURE,
        "channels": [16, 32],
        "hidden": 64,
        "num_classes": 10,
        "input_shape": [1, 8, 8],
    }
    config.update(overrides)
    return config


def build(config: dict[str, Any]) -> DigitsCNN:
    """A freshly initialised ``DigitsCNN`` with the sizes in ``config``."""
    return DigitsCNN(
        channels=list(config["channels"]),
        hidden=int(config["hidden"]),
        num_classes=int(config.get("num_classes", 10)),
        input_shape=list(config.get("input_shape", [1, 8, 8])),
    )
