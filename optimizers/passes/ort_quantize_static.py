"""``ort_quantize_static``: INT8 weights and activations with calibrated ranges (ONNX Runtime, QDQ).

Activation ranges are fixed ahead of time from a calibration set (MinMax,
Entropy or Percentile over the calibration split), so nothing is measured at
run time. The calibration set is checked disjoint from the evaluation set in
preflight (``optimizers.passes.calibration``).

What is quantized: the compute and weight ops only (``QUANTIZABLE_OP_TYPES``,
minus ``op_types_to_exclude``). Quantizing everything ONNX Runtime can
(LayerNormalization, Add, Softmax, ...) measured a pooled cosine of 0.42 on
MiniLM-L6. The MatMuls fed by a GELU (a transformer encoder's FFN
down-projection) are kept in float by default: their input has a few outlier
channels that one per-tensor INT8 scale cannot represent — measured on MiniLM,
cosine 0.940 with them quantized, 0.992 kept in float, whatever the
calibration method (the outliers are whole channels, so Entropy and Percentile
clipping did not help).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight
from optimizers.passes.calibration import SampleSet, load_calibration, model_inputs
from optimizers.passes.common import copy_companion_files
from optimizers.passes.llm_common import staged_output

#: Op types this pass quantizes unless excluded: the ones that hold weights or do the arithmetic.
QUANTIZABLE_OP_TYPES: tuple[str, ...] = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Gather")
#: Ops that compute a GELU (decomposed as Erf by the exporters, or fused).
_GELU_OPS = frozenset({"Erf", "Gelu", "FastGelu", "BiasGelu", "QuickGelu"})
#: Samples per calibration step: bounds the memory ONNX Runtime holds for intermediate outputs.
_CALIBRATION_STRIDE = 16

CalibrationMethodName = Literal["minmax", "entropy", "percentile"]


class OrtQuantizeStaticConfig(PassConfig):
    calibration_method: CalibrationMethodName = Field(
        "minmax",
        description="How activation ranges are chosen: minmax (observed range), entropy (KL-optimal "
        "clipping) or percentile (clip at the 99.999th percentile).",
    )
    per_channel: bool = Field(
        True, description="One weight scale per output channel (more accurate) instead of per tensor."
    )
    calibration_samples: int = Field(128, ge=1, le=10_000, description="Calibration samples (texts or images) to run.")
    calibration_dataset: str | None = Field(
        None,
        description="Calibration data: empty for the built-in calibration split, or a JSONL file "
        '({"text": ...} or {"query": ..., "passage": ...} lines) for text encoders.',
    )
    evaluation_dataset: str | None = Field(
        None,
        description="The recipe's evaluation file, if it is an upload: calibration is checked disjoint from it "
        "(the built-in evaluation split is always checked).",
    )
    op_types_to_exclude: list[Literal["MatMul", "Gemm", "Conv", "ConvTranspose", "Gather"]] = Field(
        default_factory=list, description="Operator types to leave in float."
    )
    keep_gelu_matmuls_float: bool = Field(
        True,
        description="Keep MatMuls fed by a GELU (transformer FFN down-projections) in float: their input has "
        "outlier channels per-tensor INT8 cannot represent.",
    )
    max_seq_length: int = Field(128, ge=8, le=512, description="Text encoders: calibration sequence length (tokens).")


@register
class OrtQuantizeStatic(Pass):
    name = "ort_quantize_static"
    title = "INT8 static quantization (ONNX Runtime)"
    description = (
        "Quantize weights and activations to INT8 (QDQ) with ranges calibrated ahead of time on a "
        "calibration set held out from evaluation, with ONNX Runtime."
    )
    Config = OrtQuantizeStaticConfig
    input_formats = ("onnx",)
    tasks = ("feature-extraction", "image-classification")
    output_format = "onnx"

    def preflight(self, artifact: ModelArtifact, config: OrtQuantizeStaticConfig) -> Preflight:
        report = super().preflight(artifact, config)
        if artifact.metadata.get("fused"):
            raise PreflightError(
                "quantize the plain exported graph, not one already fused by ort_optimize at level "
                "'extended' or 'all' (its contrib ops cannot be re-typed); put ort_quantize_static "
                "before ort_optimize — ONNX Runtime applies the fusions when it loads the quantized model"
            )
        if str(artifact.metadata.get("precision", "")).startswith("int"):
            raise PreflightError(f"{artifact.name} is already quantized ({artifact.metadata['precision']})")
        if not set(QUANTIZABLE_OP_TYPES) - set(config.op_types_to_exclude):
            raise PreflightError("op_types_to_exclude leaves no operator type to quantize")
        samples = load_calibration(
            artifact,
            config.calibration_dataset,
            config.calibration_samples,
            evaluation_dataset=config.evaluation_dataset,
        )
        report.notes.append(f"calibration: {len(samples)} samples from {samples.name}, {config.calibration_method}")
        # Measured here on MiniLM-L6 (2 cores): ~0.2 s per calibration sample plus ~15 s of graph work.
        report.estimated_seconds = 15.0 + 0.2 * len(samples) * (2.0 if config.calibration_method != "minmax" else 1.0)
        return report

    def run(self, artifact: ModelArtifact, config: OrtQuantizeStaticConfig, ctx: PassContext) -> ModelArtifact:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        samples = load_calibration(
            artifact,
            config.calibration_dataset,
            config.calibration_samples,
            evaluation_dataset=config.evaluation_dataset,
        )
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[config.calibration_method]
        op_types = [op for op in QUANTIZABLE_OP_TYPES if op not in config.op_types_to_exclude]
        notes: list[str] = []
        with staged_output(ctx.work_dir) as out, tempfile.TemporaryDirectory(dir=out.parent) as scratch:
            prepared = Path(scratch) / "prepared.onnx"
            ctx.progress(0.05, "pre-processing (shape inference, basic optimization)")
            # Symbolic shape inference fails on these exports (LIBRARIES.md); ONNX's own still runs.
            quant_pre_process(str(artifact.onnx_file), str(prepared), skip_symbolic_shape=True)
            ctx.check_cancelled()
            graph = onnx.load(str(prepared)).graph
            input_names = [item.name for item in graph.input]
            kept_float = _gelu_fed_matmuls(graph) if config.keep_gelu_matmuls_float and "MatMul" in op_types else []
            if kept_float:
                notes.append(f"{len(kept_float)} MatMuls fed by a GELU kept in float (outlier input channels)")
            present = {node.op_type for node in graph.node}
            absent = [op for op in config.op_types_to_exclude if op not in present]
            if absent:
                notes.append(f"excluded op types not in this graph: {', '.join(absent)}")
            reader = _CalibrationReader(
                model_inputs(
                    artifact,
                    samples,
                    input_names,
                    max_seq_length=config.max_seq_length,
                    # Histogram calibrators stack samples, so their shapes must agree.
                    pad=samples.kind == "text" and config.calibration_method != "minmax",
                ),
                on_sample=lambda done: ctx.progress(
                    0.1 + 0.75 * done / len(samples), f"calibrating {done}/{len(samples)}"
                ),
                check_cancelled=ctx.check_cancelled,
            )
            ctx.progress(0.1, f"calibrating on {len(samples)} samples ({config.calibration_method})")
            quantize_static(
                str(prepared),
                str(out / "model.onnx"),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=config.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=kept_float,
                calibrate_method=method,
                extra_options={"CalibStridedMinMax": _stride(len(reader))},
            )
            copy_companion_files(artifact.folder, out)
            ctx.progress(0.95, "counting quantized nodes")
            quantized_nodes = _count_quantized(out / "model.onnx", op_types)
        calibration = {**samples.describe(), "method": config.calibration_method}
        if samples.kind == "text":
            calibration["max_seq_length"] = config.max_seq_length
        return ModelArtifact.from_folder(
            ctx.work_dir,
            name="ort_quantize_static",
            format="onnx",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={
                "precision": "int8-static",
                "weight_bits": 8,
                "per_channel": config.per_channel,
                "details": {
                    "calibration": calibration,
                    "quantized_op_types": op_types,
                    "kept_float_nodes": kept_float,
                    "quantized_nodes": quantized_nodes,
                    "notes": notes,
                },
            },
        )


class _CalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over prepared input dicts, strided for bounded memory.

    ``quantize_static`` with ``CalibStridedMinMax`` calls ``set_range`` then
    drains ``get_next`` once per stride; ``len`` is the sample count.
    """

    def __init__(self, inputs: list[dict[str, np.ndarray]], *, on_sample, check_cancelled) -> None:
        self._inputs = inputs
        self._on_sample = on_sample
        self._check_cancelled = check_cancelled
        self._start, self._end = 0, len(inputs)
        self._position = 0
        self._done = 0

    def __len__(self) -> int:
        return len(self._inputs)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end = start_index, end_index
        self._position = start_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= self._end:
            return None
        self._check_cancelled()
        item = self._inputs[self._position]
        self._position += 1
        self._done += 1
        self._on_sample(self._done)
        return item


def _stride(count: int) -> int:
    """The largest divisor of ``count`` not above ``_CALIBRATION_STRIDE`` (ONNX Runtime needs one)."""
    return max(step for step in range(1, min(count, _CALIBRATION_STRIDE) + 1) if count % step == 0)


def _gelu_fed_matmuls(graph) -> list[str]:
    """Names of MatMul nodes whose activation input comes from a GELU within four producers.

    Four, because exporters decompose GELU as x·0.5·(1 + erf(x/√2)): the MatMul reads a Mul whose
    Erf sits three producers further up. A block's next GELU is further than that.
    """
    producer = {output: node for node in graph.node for output in node.output}
    constants = {item.name for item in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        frontier = [name for name in node.input if name not in constants]
        for _ in range(4):
            parents = [producer[name] for name in frontier if name in producer]
            if any(parent.op_type in _GELU_OPS for parent in parents):
                found.append(node.name)
                break
            frontier = [name for parent in parents for name in parent.input if name not in constants]
    return found


def _count_quantized(path: Path, op_types: list[str]) -> dict[str, int]:
    """Per op type in ``op_types``, how many nodes read at least one input through a DequantizeLinear."""
    import onnx

    graph = onnx.load(str(path)).graph
    dequantized = {output for node in graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in op_types and dequantized & set(node.input):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


__all__ = ["QUANTIZABLE_OP_TYPES", "OrtQuantizeStatic", "OrtQuantizeStaticConfig", "SampleSet"]
