"""``openvino_quantize``: ONNX → OpenVINO IR, with NNCF static INT8 post-training quantization.

The CPU/edge target. ``ov.Core().read_model`` reads the ONNX graph; with
``precision="int8"`` NNCF (``nncf.quantize``, ``ModelType.TRANSFORMER`` for
text encoders, which adds SmoothQuant-style handling of the activation
outliers that hurt plain per-tensor INT8) calibrates on the calibration split,
checked disjoint from evaluation in preflight. ``precision="fp32"`` only
converts — the OpenVINO baseline to compare INT8 against.

``accuracy_control`` runs ``nncf.quantize_with_accuracy_control`` instead: it
scores the model on a held-out validation subset (the ``train`` split, never
the eval split) and returns the most sensitive quantized layers to float until
the drop is at most ``max_drop`` (default: the task's gate threshold — pooled
cosine to FP32 for encoders, top-1 accuracy for image classifiers).

Output folder: ``model.xml`` + ``model.bin`` (weights kept FP32 where not
quantized: no FP16 compression) plus the input's tokenizer/config files.
Written to a hidden sibling folder and renamed when complete: a failure leaves nothing.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from optimizers.artifacts import OPENVINO_FILE, ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight, Requirements
from optimizers.passes.calibration import SampleSet, load_calibration, load_validation, model_inputs
from optimizers.passes.common import copy_companion_files
from optimizers.passes.llm_common import staged_output

#: When the task has no absolute-drop gate rule to borrow ``max_drop`` from.
_FALLBACK_MAX_DROP = 0.01


class OpenVinoQuantizeConfig(PassConfig):
    precision: Literal["int8", "fp32"] = Field(
        "int8",
        description="int8: NNCF static post-training quantization; fp32: conversion only (the OpenVINO baseline).",
    )
    calibration_samples: int = Field(128, ge=1, le=10_000, description="Calibration samples (NNCF subset size).")
    calibration_dataset: str | None = Field(
        None,
        description="Calibration data: empty for the built-in calibration split, or a JSONL file for text encoders.",
    )
    evaluation_dataset: str | None = Field(
        None,
        description="The recipe's evaluation file, if it is an upload: calibration is checked disjoint from it "
        "(the built-in evaluation split is always checked).",
    )
    accuracy_control: bool = Field(
        False,
        description="Quantize with accuracy control: keep the most sensitive layers in float until the drop on a "
        "held-out validation subset is at most max_drop.",
    )
    max_drop: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Largest metric drop accuracy control accepts (absolute); empty: the task's gate threshold.",
    )
    validation_samples: int = Field(
        64, ge=2, le=5_000, description="Accuracy control: validation samples from the train split (never eval)."
    )
    max_iterations: int | None = Field(
        None,
        ge=1,
        le=1_000,
        description="Accuracy control: most revert-and-rescore rounds (each reverts the next most sensitive "
        "layer group to float); empty: until the target is met or nothing is left.",
    )
    max_seq_length: int = Field(128, ge=8, le=512, description="Text encoders: longest calibration sequence (tokens).")


@register
class OpenVinoQuantize(Pass):
    name = "openvino_quantize"
    title = "OpenVINO INT8 (NNCF post-training quantization)"
    description = (
        "Convert an ONNX model to OpenVINO IR and quantize it to INT8 with NNCF on a calibration set, "
        "optionally with accuracy control that keeps the most sensitive layers in full precision."
    )
    Config = OpenVinoQuantizeConfig
    input_formats = ("onnx",)
    tasks = ("feature-extraction", "image-classification")
    output_format = "openvino"
    requires = Requirements(packages=("openvino", "nncf"))

    def preflight(self, artifact: ModelArtifact, config: OpenVinoQuantizeConfig) -> Preflight:
        report = super().preflight(artifact, config)
        if artifact.metadata.get("fused"):
            raise PreflightError(
                "convert the plain exported graph, not one fused by ort_optimize: OpenVINO cannot read "
                "ONNX Runtime's contrib operators"
            )
        if str(artifact.metadata.get("precision", "")).startswith("int"):
            raise PreflightError(
                f"{artifact.name} is already quantized ({artifact.metadata['precision']}); "
                "give openvino_quantize the floating-point ONNX export"
            )
        if config.precision == "fp32":
            if config.accuracy_control:
                raise PreflightError("accuracy_control applies to precision int8 only")
            report.estimated_seconds = 10.0
            return report
        samples = load_calibration(
            artifact,
            config.calibration_dataset,
            config.calibration_samples,
            evaluation_dataset=config.evaluation_dataset,
        )
        report.notes.append(f"calibration: {len(samples)} samples from {samples.name}")
        # Measured here on MiniLM-L6 (2 cores): ~40 s for 128 samples; accuracy control re-validates repeatedly.
        report.estimated_seconds = 20.0 + 0.2 * len(samples)
        if config.accuracy_control:
            validation = load_validation(artifact, config.validation_samples)
            report.notes.append(f"accuracy control: {len(validation)} validation samples from {validation.name}")
            report.estimated_seconds += 2.0 * len(validation)
        return report

    def run(self, artifact: ModelArtifact, config: OpenVinoQuantizeConfig, ctx: PassContext) -> ModelArtifact:
        import openvino as ov

        ctx.progress(0.05, "converting ONNX to OpenVINO")
        # Core.read_model, not ov.convert_model: convert_model splits a path string at commas
        # (its multi-file syntax), so a work folder with a comma in its name failed to convert.
        model = ov.Core().read_model(artifact.onnx_file)
        input_names = [port.get_any_name() for port in model.inputs]
        details: dict[str, Any] = {"notes": []}
        metadata: dict[str, Any] = {"precision": "fp32", "runtime": "openvino"}
        ctx.check_cancelled()
        if config.precision == "int8":
            model = self._quantize(model, artifact, config, ctx, input_names, details)
            metadata.update({"precision": "int8-static", "weight_bits": 8})
        details["int8"] = int8_facts(model)
        with staged_output(ctx.work_dir) as out:
            ctx.progress(0.9, "saving OpenVINO IR")
            # No FP16 weight compression: float layers stay FP32, as the report says.
            ov.save_model(model, str(out / OPENVINO_FILE), compress_to_fp16=False)
            copy_companion_files(artifact.folder, out)
        metadata["details"] = details
        return ModelArtifact.from_folder(
            ctx.work_dir,
            name=f"openvino_{config.precision}",
            format="openvino",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata=metadata,
        )

    def _quantize(self, model, artifact, config, ctx, input_names, details) -> Any:
        import nncf
        from nncf.quantization.advanced_parameters import (
            AdvancedAccuracyRestorerParameters,
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
        )

        samples = load_calibration(
            artifact,
            config.calibration_dataset,
            config.calibration_samples,
            evaluation_dataset=config.evaluation_dataset,
        )
        # Natural lengths (no padding): padded positions would skew activation statistics.
        calibration = nncf.Dataset(
            model_inputs(artifact, samples, input_names, max_seq_length=config.max_seq_length, pad=False)
        )
        model_type = nncf.ModelType.TRANSFORMER if artifact.task == "feature-extraction" else None
        details["calibration"] = {**samples.describe(), "method": "nncf-ptq"}
        if samples.kind == "text":
            details["calibration"]["max_seq_length"] = config.max_seq_length
        if not config.accuracy_control:
            ctx.progress(0.15, f"NNCF post-training quantization on {len(samples)} samples")
            return nncf.quantize(model, calibration, subset_size=len(samples), model_type=model_type)

        validation = load_validation(artifact, config.validation_samples)
        max_drop = config.max_drop if config.max_drop is not None else default_max_drop(artifact.task)
        ctx.progress(0.1, f"scoring FP32 on {len(validation)} validation samples")
        items, validate = _validation(model, artifact, validation, input_names, config.max_seq_length)
        ctx.progress(0.2, f"NNCF quantization with accuracy control (max drop {max_drop})")
        # SmoothQuant off here: reverting a smoothed MatMul to float left the model broken on
        # MiniLM (NNCF 3.4: reverting one MatMul raised the validation drop from about 0.01 to 0.65;
        # with SmoothQuant off each revert lowered the drop, 0.0059 → 0.0044).
        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration,
            nncf.Dataset(items, lambda item: item[0]),
            validate,
            max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(samples),
            model_type=model_type,
            advanced_quantization_parameters=AdvancedQuantizationParameters(
                smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)
            ),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=config.max_iterations or AdvancedAccuracyRestorerParameters().max_num_iterations
            ),
        )
        ctx.progress(0.8, "scoring the quantized model on the validation subset")
        reference = _score(model, validate, items)
        result = _score(quantized, validate, items)
        details["accuracy_control"] = {
            "validation_dataset": validation.name,
            "validation_samples": len(validation),
            "metric": "cosine" if validation.kind == "text" else "accuracy",
            "fp32": reference,
            "int8": result,
            "drop": reference - result,
            "max_drop": max_drop,
            "smooth_quant": False,
        }
        if reference - result > max_drop + 1e-9:
            details["notes"].append(
                f"accuracy control could not reach the target: validation drop {reference - result:.4f} > {max_drop}"
            )
        return quantized


def default_max_drop(task: str) -> float:
    """The task's gate threshold for its first absolute-drop quality rule (cosine, accuracy)."""
    from optimizers.gates import default_rules

    for rule in default_rules(task):
        if rule.kind == "absolute_drop":
            return float(rule.threshold)
    return _FALLBACK_MAX_DROP


def int8_facts(model) -> dict[str, int]:
    """How much of an ``ov.Model`` is INT8: FakeQuantize nodes and 8-bit integer constants (weights)."""
    fake_quantize = 0
    int8_constants = 0
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "FakeQuantize":
            fake_quantize += 1
        elif kind == "Constant" and op.get_output_element_type(0).get_type_name() in ("i8", "u8"):
            int8_constants += 1
    return {"fake_quantize": fake_quantize, "int8_constants": int8_constants}


def _validation(model, artifact: ModelArtifact, validation: SampleSet, input_names: list[str], max_seq_length: int):
    """(items, validation_fn) for accuracy control.

    Text items carry the FP32 model's pooled embedding; the metric is the mean
    cosine to it (1.0 for FP32 itself). Image items carry the label; the metric
    is top-1 accuracy. ``validation_fn`` returns (metric, per-item values), the
    form NNCF uses to rank which quantizers to revert.
    """
    import openvino as ov

    from optimizers.evaluation.feature_extraction import mean_pool

    inputs = model_inputs(artifact, validation, input_names, max_seq_length=max_seq_length, pad=False)
    if validation.kind == "image":
        assert validation.labels is not None
        items = list(zip(inputs, validation.labels.tolist(), strict=True))

        def validate(compiled, data) -> tuple[float, list[float]]:
            values = [float(np.argmax(compiled(item[0])[0], axis=1)[0] == item[1]) for item in data]
            return float(np.mean(values)), values

        return items, validate

    reference_model = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    references = [mean_pool(reference_model(item)[0], item["attention_mask"])[0] for item in inputs]
    items = list(zip(inputs, references, strict=True))

    def validate(compiled, data) -> tuple[float, list[float]]:
        values = [
            float(np.dot(mean_pool(compiled(item[0])[0], item[0]["attention_mask"])[0], item[1])) for item in data
        ]
        return float(np.mean(values)), values

    return items, validate


def _score(model, validate, items) -> float:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    try:
        return validate(compiled, items)[0]
    except Exception as error:  # an IR that compiles but cannot run is a failed pass, said plainly
        raise PassError(f"the quantized OpenVINO model failed on the validation subset: {error}") from error
