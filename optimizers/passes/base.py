"""The ``Pass`` contract every optimization technique implements.

A pass declares what it accepts (formats, tasks), what it produces, what the
machine needs (``Requirements``) and a typed pydantic ``Config`` from which the
web form is generated. The pipeline runner calls ``preflight`` → ``run`` →
``cleanup`` (always), so a pass only implements the technique itself.
"""

from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from optimizers.artifacts import ModelArtifact
from optimizers.errors import CancelledError, PreflightError

#: ``Pass.output_format`` of a pass whose output has its input's format (e.g. pruning: hf → hf, torch → torch).
SAME_AS_INPUT = "same-as-input"


class PassConfig(BaseModel):
    """Base for pass configs: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Requirements:
    """What a worker must have to run a pass."""

    device: str = "cpu"  # "cpu" or "cuda"
    min_compute_capability: float | None = None
    packages: tuple[str, ...] = ()
    #: Runs on a CPU but much faster on a GPU: routed to the ``gpu`` queue when one is enabled,
    #: else allowed on a CPU worker when its preflight estimate fits (see ``Pass.estimate``).
    prefers_gpu: bool = False

    def missing_packages(self) -> list[str]:
        """Import names from ``packages`` that this interpreter cannot import."""
        return [name for name in self.packages if importlib.util.find_spec(name) is None]


@dataclass
class PassContext:
    """What the runner hands a pass: a private output folder and callbacks.

    ``progress(fraction, message)`` reports progress inside the pass (0..1);
    ``check_cancelled()`` raises ``CancelledError`` when the caller asked to stop.
    """

    work_dir: Path
    log: Callable[[str], None] = field(default=lambda message: logging.getLogger("optimizers").info(message))
    progress: Callable[[float, str], None] = field(default=lambda fraction, message: None)
    should_cancel: Callable[[], bool] = field(default=lambda: False)

    def check_cancelled(self) -> None:
        if self.should_cancel():
            raise CancelledError("cancelled at the user's request")


@dataclass
class Preflight:
    """Outcome of ``Pass.preflight``: estimates shown before submission."""

    estimated_seconds: float | None = None
    estimated_memory_mb: float | None = None
    notes: list[str] = field(default_factory=list)


class Pass(ABC):
    """One optimization technique. Subclasses set the class attributes and ``run``."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[PassConfig]] = PassConfig
    input_formats: ClassVar[tuple[str, ...]]
    tasks: ClassVar[tuple[str, ...]]
    output_format: ClassVar[str]
    requires: ClassVar[Requirements] = Requirements()

    @classmethod
    def output_format_for(cls, input_format: str | None) -> str | None:
        """Format this pass produces from ``input_format`` (``SAME_AS_INPUT`` passes keep it)."""
        return input_format if cls.output_format == SAME_AS_INPUT else cls.output_format

    def parse_config(self, values: dict[str, Any] | None) -> PassConfig:
        """Validate raw values into this pass's ``Config`` (pydantic errors propagate)."""
        return self.Config.model_validate(values or {})

    def preflight(self, artifact: ModelArtifact, config: PassConfig) -> Preflight:
        """Refuse with ``PreflightError`` if this input or machine cannot run the pass.

        Subclasses extend this (call ``super().preflight``) with technique-specific
        checks and estimates.
        """
        if artifact.format not in self.input_formats:
            raise PreflightError(
                f"{self.name} takes {', '.join(self.input_formats)} models, "
                f"but its input '{artifact.name}' is {artifact.format}"
            )
        if artifact.task not in self.tasks:
            raise PreflightError(f"{self.name} does not support task {artifact.task}")
        missing = self.requires.missing_packages()
        if missing:
            raise PreflightError(f"{self.name} needs Python packages not installed here: {', '.join(missing)}")
        if self.requires.device == "cuda" and not _cuda_available():
            raise PreflightError(f"{self.name} needs a CUDA GPU; this worker has none")
        return Preflight()

    def estimate(self, artifact: ModelArtifact, config: PassConfig, *, on_gpu: bool) -> Preflight:
        """Memory/time estimate without loading the model or torch (for the web form and API).

        The default knows nothing; passes with heavy work override it. ``preflight`` gives the
        same estimate for the machine it runs on, after the checks that need the model.
        """
        return Preflight()

    @abstractmethod
    def run(self, artifact: ModelArtifact, config: PassConfig, ctx: PassContext) -> ModelArtifact:
        """Build a new artifact under ``ctx.work_dir`` from ``artifact``."""

    def cleanup(self, ctx: PassContext) -> None:  # noqa: B027 - optional hook
        """Release resources; called after ``run`` whether it succeeded or not."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Registry entry for UIs and the API: name, formats and config JSON schema."""
        return {
            "name": cls.name,
            "title": cls.title,
            "description": cls.description,
            "input_formats": list(cls.input_formats),
            "output_format": cls.output_format,
            "tasks": list(cls.tasks),
            "requires": {
                "device": cls.requires.device,
                "min_compute_capability": cls.requires.min_compute_capability,
                "packages": list(cls.requires.packages),
                "prefers_gpu": cls.requires.prefers_gpu,
            },
            "config_schema": cls.Config.model_json_schema(),
        }


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
