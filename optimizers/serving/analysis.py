"""The ``mode: serving`` job: batching sweep + recommendation + Triton repository + KV-cache calculator.

Spec (a job's recipe, or YAML for ``run_serving_analysis``)::

    mode: serving
    model: zoo:digits-cnn
    steps: [onnx_export]          # optional passes first (e.g. to get an ONNX artifact for Triton)
    p95_budget_ms: 20
    batching: {max_batch_sizes: [1, 4, 8, 16], max_queue_delays_ms: [0, 2, 10]}
    triton: {model_name: digits, instance_count: 1}
    kv_cache: {context_lens: [512, 2048, 8192], batch_size: 1, dtype: float16}
    speculative: {draft: zoo:tiny-lm-draft, max_new_tokens: 48, prompts: 4, prompt_lookup: true}
    kv_quant: {backend: hqq, nbits: [4, 8], context_lens: [128, 512]}
    continuous_batching: {max_batch: 16, rate_factors: [0.5, 1, 2, 4, 8], requests: 200,
                          prompt_len: {dist: uniform, low: 16, high: 256}, output_len: {dist: fixed, value: 64}}

What runs depends on the model: image classifiers and text encoders get the
dynamic batching sweep (in its own process) and, when the final artifact is
ONNX, a Triton model repository zip configured from the recommendation; causal
LMs get the KV-cache calculator (MHA/GQA/MQA, sliding window) and the decode
roofline from the copy bandwidth measured here, plus (Hugging Face models) speculative
decoding measured against plain greedy (``speculative.py``) and the quantized KV cache measured
against the default one (``kv_quant.py``; ``enabled: false`` skips either), and static vs continuous
batching estimated by a discrete-event simulation from measured step latencies (``continuous.py``,
``vllm_benchmark: true`` measures with vLLM where installed with CUDA). The result is ``ServingReport``
(``serving.json``); ``serving_figure`` turns its sweep into the plotly chart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from optimizers.errors import RecipeError
from optimizers.recipe import Step
from optimizers.resolve import resolve_model
from optimizers.serving.batching import BatchingRecommendation, BatchingSweep, SweepSettings, curves
from optimizers.serving.continuous import ContinuousBatchingOptions, ContinuousBatchingReport
from optimizers.serving.kv_cache import BandwidthProbe, DecodeRoofline, KVCacheRow
from optimizers.serving.kv_quant import KVQuantOptions, KVQuantReport
from optimizers.serving.speculative import SpeculativeOptions, SpeculativeReport

SERVING_MODE = "serving"


class TritonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str | None = None
    instance_count: int = Field(1, ge=1, le=64)
    instance_kind: str = Field("KIND_CPU", pattern="^KIND_(CPU|GPU)$")


class KVCacheOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    context_lens: list[int] = Field(default_factory=lambda: [512, 2048, 8192, 32768])
    batch_size: int = Field(1, ge=1, le=4096)
    #: Cache dtype; None: the model config's.
    dtype: str | None = None
    #: Copy-probe buffer (should exceed the last-level cache).
    probe_bytes: int = Field(256 * 1024 * 1024, ge=1024, le=8 * 1024**3)


class ServingSpec(BaseModel):
    """A validated serving analysis (``mode: serving``)."""

    model_config = ConfigDict(extra="forbid")

    mode: str = SERVING_MODE
    model: str
    task: str | None = None
    tokenizer: str | None = None
    steps: list[dict[str, Any]] = Field(default_factory=list)
    p95_budget_ms: float = Field(50.0, gt=0, le=600_000)
    batching: SweepSettings = Field(default_factory=SweepSettings)
    triton: TritonOptions = Field(default_factory=TritonOptions)
    kv_cache: KVCacheOptions = Field(default_factory=KVCacheOptions)
    #: Causal LMs: speculative decoding (draft model, prompt lookup) and KV-cache quantization, measured.
    speculative: SpeculativeOptions = Field(default_factory=SpeculativeOptions)
    kv_quant: KVQuantOptions = Field(default_factory=KVQuantOptions)
    #: Causal LMs: static vs continuous batching, simulated from measured step latencies (an estimate).
    continuous_batching: ContinuousBatchingOptions = Field(default_factory=ContinuousBatchingOptions)

    @classmethod
    def parse(cls, raw: Any) -> ServingSpec:
        """Validate a mapping; ``RecipeError`` with a readable message (also for unknown passes in ``steps``)."""
        from optimizers.recipe import Recipe, _format_validation_error

        if not isinstance(raw, dict):
            raise RecipeError("a serving analysis must be a mapping with at least 'model'")
        try:
            steps = [Step.from_raw(step).to_raw() for step in raw.get("steps") or []]
            spec = cls.model_validate({**raw, "steps": steps})
        except ValueError as error:
            message = _format_validation_error(error) if hasattr(error, "errors") else str(error)
            raise RecipeError(f"invalid serving analysis: {message}") from None
        if spec.mode != SERVING_MODE:
            raise RecipeError(f"a serving analysis has mode '{SERVING_MODE}', not '{spec.mode}'")
        Recipe.parse({"model": spec.model, "steps": spec.steps})  # known passes, configs, format chain
        return spec


class ServingReport(BaseModel):
    """``serving.json``: what was measured and computed, and for which artifact."""

    kind: str = SERVING_MODE
    model: str
    task: str
    artifact: str
    artifact_format: str
    p95_budget_ms: float
    sweep: BatchingSweep | None = None
    recommendation: BatchingRecommendation | None = None
    triton_zip: str | None = None
    triton_config: str | None = None
    kv_cache: list[KVCacheRow] = Field(default_factory=list)
    bandwidth: BandwidthProbe | None = None
    rooflines: list[DecodeRoofline] = Field(default_factory=list)
    speculative: SpeculativeReport | None = None
    kv_quant: KVQuantReport | None = None
    continuous: ContinuousBatchingReport | None = None
    notes: list[str] = Field(default_factory=list)


def run_serving_analysis(
    spec: ServingSpec,
    out_dir: Path,
    *,
    on_progress: Callable[[Any], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    cache_dir: Path | None = None,
) -> ServingReport:
    """Run ``spec`` into ``out_dir`` (``serving.json``, ``triton/<name>.zip``) and return the report.

    Raises ``RecipeError``/``PreflightError``/``PassError`` like a recipe run and
    ``CancelledError`` between phases when ``should_cancel()`` turns true.
    """
    from optimizers.pipeline import _Reporter, _run_step

    reporter = _Reporter(on_progress, on_log, should_cancel)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reporter.progress("prepare", 0.0, f"resolving {spec.model}")
    artifact = resolve_model(spec.model, task=spec.task, tokenizer=spec.tokenizer, work_dir=out_dir / "input")
    for index, step in enumerate(spec.steps, start=1):
        reporter.check_cancelled()
        reporter.progress(f"step {index}: {step['pass']}", 5.0, f"running {step['pass']}")
        config = {key: value for key, value in step.items() if key != "pass"}
        artifact = _run_step(
            step["pass"], config, artifact, out_dir / "variants" / f"{index}-{step['pass']}", reporter, 5.0, 15.0,
            cache_dir or out_dir / "cache",
        )  # fmt: skip
    report = ServingReport(
        model=spec.model,
        task=artifact.task,
        artifact=artifact.name,
        artifact_format=artifact.format,
        p95_budget_ms=spec.p95_budget_ms,
    )
    if artifact.task == "causal-lm":
        _kv_cache_part(spec, artifact, report, reporter)
        _speculative_part(spec, artifact, report, reporter, out_dir)
        _kv_quant_part(spec, artifact, report, reporter)
        _continuous_part(spec, artifact, report, reporter)
    else:
        _batching_part(spec, artifact, report, reporter, out_dir)
    (out_dir / "serving.json").write_text(report.model_dump_json(indent=2))
    reporter.progress("done", 100.0, "serving analysis finished")
    return report


def _batching_part(spec: ServingSpec, artifact, report: ServingReport, reporter, out_dir: Path) -> None:
    from optimizers.serving.batching import recommend_setting, sweep_isolated
    from optimizers.serving.triton import export_repository, settings_from_recommendation, zip_repository

    reporter.check_cancelled()
    settings = spec.batching
    cells = len(settings.max_batch_sizes) * len(settings.max_queue_delays_ms)
    cells *= len(settings.rates_per_s or settings.rate_factors)
    reporter.progress("batching sweep", 20.0, f"{cells} cells × {settings.requests_per_cell} requests, own process")
    report.sweep = sweep_isolated(artifact, settings)
    report.recommendation = recommend_setting(report.sweep.cells, spec.p95_budget_ms)
    if report.recommendation is None:
        report.notes.append(
            f"No setting kept p95 within {spec.p95_budget_ms:g} ms without saturating: raise the budget, "
            "lower the offered rates, or make the model faster first."
        )
    else:
        reporter.log(f"recommendation: {report.recommendation.reason}")
    if artifact.format != "onnx":
        report.notes.append(
            f"No Triton repository: the analysed artifact is {artifact.format}; add an onnx_export step to get one."
        )
        return
    reporter.check_cancelled()
    reporter.progress("triton export", 90.0, "writing the Triton model repository")
    name = spec.triton.model_name or _triton_name(spec.model)
    triton = settings_from_recommendation(
        report.recommendation, instance_kind=spec.triton.instance_kind, instance_count=spec.triton.instance_count
    )
    folder = export_repository(artifact, out_dir / "triton" / "repository", model_name=name, settings=triton)
    report.triton_config = (folder / "config.pbtxt").read_text()
    report.triton_zip = str(zip_repository(folder.parent, out_dir / "triton" / f"{name}.zip"))


def _kv_cache_part(spec: ServingSpec, artifact, report: ServingReport, reporter) -> None:
    from optimizers.serving.kv_cache import (
        attention_comparison,
        attention_shape,
        decode_roofline,
        kv_cache_bytes,
        measure_copy_bandwidth,
    )

    config_file = artifact.folder / "config.json"
    if not config_file.is_file():
        report.notes.append(f"No KV-cache figures: the {artifact.format} artifact has no config.json.")
        return
    shape = attention_shape(json.loads(config_file.read_text()))
    options = spec.kv_cache
    report.kv_cache = attention_comparison(
        shape, context_lens=options.context_lens, batch_size=options.batch_size, dtype=options.dtype
    )
    if shape.max_position_embeddings and max(options.context_lens) > shape.max_position_embeddings:
        report.notes.append(
            f"Context lengths above the model's {shape.max_position_embeddings} positions are what-ifs."
        )
    reporter.check_cancelled()
    reporter.progress("bandwidth probe", 50.0, "measuring copy bandwidth")
    report.bandwidth = measure_copy_bandwidth(buffer_bytes=options.probe_bytes)
    weights = sum(path.stat().st_size for path in artifact.folder.glob("*.safetensors")) or artifact.size_bytes
    for context in options.context_lens:
        cache = kv_cache_bytes(shape, context_len=context, dtype=options.dtype)
        report.rooflines.append(
            decode_roofline(
                weight_bytes=weights,
                kv_bytes_per_sequence=cache,
                bandwidth_bytes_per_s=report.bandwidth.bytes_per_s,
                batch_size=options.batch_size,
                context_len=context,
            )
        )
    report.notes.append(
        "Roofline: an upper bound from one-thread copy bandwidth; small models whose weights fit in the "
        "CPU caches can decode faster than it."
    )
    report.notes.append(
        "Dynamic batching sweeps apply to encoders and classifiers; LLM batching is "
        + ("estimated from measured decode steps (continuous batching)." if spec.continuous_batching.enabled
           else "not measured here.")
    )  # fmt: skip


def _runs_here(enabled: bool, what: str, artifact, report: ServingReport) -> bool:
    """Whether a generation measurement runs: enabled, and on a Hugging Face model (else a note says why not)."""
    if not enabled:
        return False
    if artifact.format != "hf":
        report.notes.append(f"No {what}: it runs on Hugging Face models, not {artifact.format}.")
        return False
    return True


def _speculative_part(spec: ServingSpec, artifact, report: ServingReport, reporter, out_dir: Path) -> None:
    from optimizers.errors import PreflightError
    from optimizers.serving.speculative import TRAINED_HEADS_NOTE, speculative_decoding

    options = spec.speculative
    if not _runs_here(options.enabled, "speculative decoding", artifact, report):
        return
    reporter.check_cancelled()
    draft_folder = None
    if options.draft_model:
        reporter.progress("speculative decoding", 60.0, f"resolving the draft model {options.draft}")
        draft_folder = resolve_model(options.draft, work_dir=out_dir / "draft").folder
    reporter.progress("speculative decoding", 62.0, "draft-model and prompt-lookup generation vs plain greedy")
    try:
        report.speculative = speculative_decoding(artifact, options, draft_folder=draft_folder, on_log=reporter.log)
    except PreflightError as error:
        report.notes.append(f"No speculative decoding: {error}. {TRAINED_HEADS_NOTE}")


def _kv_quant_part(spec: ServingSpec, artifact, report: ServingReport, reporter) -> None:
    from optimizers.serving.kv_quant import kv_cache_quantization

    options = spec.kv_quant
    if not _runs_here(options.enabled, "KV-cache quantization", artifact, report):
        return
    reporter.check_cancelled()
    variants = ", ".join(f"int{bits}" for bits in options.nbits)
    reporter.progress("kv-cache quantization", 80.0, f"default cache vs {options.backend} {variants}, own processes")
    report.kv_quant = kv_cache_quantization(artifact, options, on_log=reporter.log)


def _continuous_part(spec: ServingSpec, artifact, report: ServingReport, reporter) -> None:
    from optimizers.errors import PreflightError
    from optimizers.serving.continuous import analyse_continuous_batching

    if not spec.continuous_batching.enabled:
        return
    try:
        report.continuous = analyse_continuous_batching(artifact, spec.continuous_batching, reporter)
    except PreflightError as error:
        report.notes.append(f"No continuous batching estimate: {error}.")


def _triton_name(model: str) -> str:
    import re

    base = Path(model.removeprefix("zoo:")).name or "model"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.") or "model"
    return name[:128]


def serving_figure(report: ServingReport) -> dict[str, Any] | None:
    """Plotly figure (JSON-ready): throughput vs p95 per setting, the budget line, the recommendation."""
    if report.sweep is None:
        return None
    data: list[dict[str, Any]] = []
    for line in curves(report.sweep):
        points = line["points"]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"batch ≤ {line['max_batch_size']}, delay {line['max_queue_delay_ms']:g} ms",
                "x": [point["throughput_per_s"] for point in points],
                "y": [point["p95_ms"] for point in points],
                "text": [
                    f"offered {point['offered_rate_per_s']:.1f}/s" + (" (saturated)" if point["saturated"] else "")
                    for point in points
                ],
                "marker": {"symbol": ["x" if point["saturated"] else "circle" for point in points]},
            }
        )
    pick = report.recommendation
    if pick is not None:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "recommended",
                "x": [pick.throughput_per_s],
                "y": [pick.p95_ms],
                "marker": {"size": 16, "symbol": "star"},
            }
        )
    return {
        "data": data,
        "layout": {
            "title": {"text": "Dynamic batching: throughput vs p95 latency per setting"},
            "xaxis": {"title": {"text": "throughput (requests/s)"}},
            "yaxis": {"title": {"text": "p95 latency (ms)"}, "type": "log"},
            "shapes": [
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": report.p95_budget_ms,
                    "y1": report.p95_budget_ms,
                    "line": {"dash": "dash"},
                }
            ],
        },
    }
