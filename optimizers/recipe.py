"""Recipes: the model, the ordered passes, the gate and the benchmark settings.

The same object is read from YAML by the CLI and from JSON by the API;
``Recipe.parse`` validates everything that can be checked without running:
known passes, typed config values, and that each step accepts the format the
previous step produces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from optimizers.errors import RecipeError

GateKind = Literal["absolute_drop", "relative_drop", "recovery_ratio", "min_speedup", "max_size_ratio"]


class GateRule(BaseModel):
    """One quality or performance rule, evaluated against the baseline."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    kind: GateKind
    threshold: float


class BenchmarkSettings(BaseModel):
    """Latency harness settings (defaults follow optimum-benchmark)."""

    model_config = ConfigDict(extra="forbid")

    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8])
    seq_len: int = Field(128, ge=1, le=8192)
    warmup: int = Field(10, ge=0, le=10_000)
    min_iterations: int = Field(10, ge=1, le=1_000_000)
    min_seconds: float = Field(10.0, ge=0.0, le=3600.0)
    threads: int | None = Field(None, ge=1, le=1024)
    #: Runtime variants of the baseline timed as extra rows (``optimizers.benchmark.variants``):
    #: e.g. ``[fp16, bf16, sdpa, eager_attention, flash_attention, torch_compile, fp16+torch_compile]``.
    variants: list[str] = Field(default_factory=list, max_length=16)

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, value: list[str]) -> list[str]:
        from optimizers.benchmark.variants import parse_variants

        try:
            return [variant.name for variant in parse_variants(value)]
        except RecipeError as error:
            raise ValueError(str(error)) from None

    @field_validator("batch_sizes")
    @classmethod
    def _positive_batches(cls, value: list[int]) -> list[int]:
        if not value or any(size < 1 or size > 4096 for size in value):
            raise ValueError("batch_sizes must be a non-empty list of integers between 1 and 4096")
        return value

    def quick(self) -> BenchmarkSettings:
        """Short settings for tests and smoke runs (still warm-up + percentiles)."""
        return self.model_copy(update={"warmup": 2, "min_iterations": 5, "min_seconds": 0.2})


class EvaluationSettings(BaseModel):
    """How much of the held-out set to evaluate on."""

    model_config = ConfigDict(extra="forbid")

    max_samples: int = Field(256, ge=1, le=100_000)
    batch_size: int = Field(32, ge=1, le=1024)


class Step(BaseModel):
    """One pass with its raw config (validated against the pass's Config)."""

    pass_name: str
    config: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: Any) -> Step:
        if isinstance(raw, str):
            return cls(pass_name=raw)
        if not isinstance(raw, dict) or "pass" not in raw:
            raise RecipeError(f"each step needs a 'pass' key, got {raw!r}")
        values = dict(raw)
        name = values.pop("pass")
        nested = values.pop("config", None)
        if nested is not None:
            if not isinstance(nested, dict):
                raise RecipeError(f"step '{name}': 'config' must be a mapping")
            values = {**nested, **values}
        return cls(pass_name=str(name), config=values)

    def to_raw(self) -> dict[str, Any]:
        return {"pass": self.pass_name, **self.config}


class Recipe(BaseModel):
    """A validated recipe. Build with ``Recipe.parse`` / ``Recipe.from_yaml``."""

    model_config = ConfigDict(extra="forbid")

    model: str
    task: str | None = None
    dataset: str | None = None
    tokenizer: str | None = None
    steps: list[Step] = Field(default_factory=list)
    gate: list[GateRule] | None = None
    benchmark: BenchmarkSettings = Field(default_factory=BenchmarkSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    #: Profile the baseline first (pre/model/post split, top operators). Measure before optimizing.
    profile: bool = True

    @classmethod
    def parse(cls, raw: Any, *, input_format: str | None = None) -> Recipe:
        """Validate a recipe mapping; ``RecipeError`` with a readable message otherwise.

        ``input_format`` (``hf``/``onnx``) lets the caller check the step chain
        when it already knows the model's format; otherwise it is inferred
        from the model reference where possible.
        """
        if not isinstance(raw, dict):
            raise RecipeError("a recipe must be a mapping with at least 'model' and 'steps'")
        values = dict(raw)
        steps_raw = values.pop("steps", [])
        if not isinstance(steps_raw, list):
            raise RecipeError("'steps' must be a list")
        try:
            steps = [Step.from_raw(step) for step in steps_raw]
            recipe = cls.model_validate({**values, "steps": steps})
        except ValidationError as error:
            raise RecipeError(_format_validation_error(error)) from None
        recipe.check_steps(input_format or guess_format(recipe.model))
        return recipe

    @classmethod
    def from_yaml(cls, text: str) -> Recipe:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise RecipeError(f"recipe is not valid YAML: {error}") from None
        return cls.parse(raw)

    @classmethod
    def from_file(cls, path: Path) -> Recipe:
        return cls.from_yaml(Path(path).read_text())

    def check_steps(self, input_format: str | None) -> None:
        """Each step's pass exists, its config validates and it accepts the previous format."""
        from optimizers.passes import get_pass

        current = input_format
        for index, step in enumerate(self.steps, start=1):
            technique = get_pass(step.pass_name)
            try:
                technique.parse_config(step.config)
            except ValidationError as error:
                raise RecipeError(f"step {index} ({step.pass_name}): {_format_validation_error(error)}") from None
            if current is not None and current not in technique.input_formats:
                raise RecipeError(
                    f"step {index} ({step.pass_name}) takes {', '.join(technique.input_formats)} models, "
                    f"but receives {current}"
                )
            current = technique.output_format_for(current)

    def to_raw(self) -> dict[str, Any]:
        """The recipe as a plain mapping (the API's JSON / the YAML file)."""
        data = self.model_dump(exclude={"steps"}, exclude_none=True)
        data["steps"] = [step.to_raw() for step in self.steps]
        return data


def guess_format(model: str) -> str | None:
    """Format implied by a model reference (``zoo:minilm`` is hf, ``zoo:digits-cnn`` torch, ``*.onnx`` onnx)."""
    if model.startswith("zoo:"):
        from optimizers.zoo import zoo_format

        return zoo_format(model)
    path = Path(model)
    if path.suffix == ".onnx" or (path / "model.onnx").is_file():
        return "onnx"
    from optimizers.models import is_torch_module_folder

    if is_torch_module_folder(path):
        return "torch"
    if (path / "config.json").is_file():
        return "hf"
    return None


def _format_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "value"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)
