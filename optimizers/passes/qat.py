"""``qat``: quantization-aware training of an image classifier → INT8 ONNX (QDQ).

Why PT2E and not torchao's ``QATConfig``: in torchao 0.18 ``QATConfig``
prepares only ``nn.Linear`` and ``nn.Embedding`` (``FakeQuantizedLinear``,
``FakeQuantizedEmbedding``) — a CNN's convolutions would stay float — and its
converted weights are torchao tensor subclasses that do not save as plain
safetensors. torchao's PT2E flow (``torchao.quantization.pt2e``, the successor
of ``torch.ao``'s) does serve conv and linear on this torch (2.13): the model is
captured with ``torch.export``, ``prepare_qat_pt2e`` with the
``X86InductorQuantizer`` (INT8: weights symmetric per output channel,
activations asymmetric uint8 per tensor) inserts fake quantization, the model
is fine-tuned on the train split, and ``convert_pt2e`` turns it into a graph of
quantize/dequantize ops around the float ops.

Storage: that converted graph is exported to ONNX (dynamo exporter) as
QuantizeLinear/DequantizeLinear around Conv/Gemm with INT8 weight initializers
— no pickle — and ONNX Runtime fuses it into integer kernels when it loads it.
The export is verified against the converted PyTorch graph on the calibration split
(logits within ``rtol`` of their range for 99% of the images, top-1 agreement ≥ ``MIN_EXPORT_AGREEMENT``).

Training runs on one thread (a 40K-parameter CNN gains nothing from more, and a
busy machine makes thread barriers cost more than the arithmetic).

PTQ vs QAT: with ``compare_ptq`` the same quantizer is also applied without
training (``prepare_pt2e`` + calibration on the calibration split), and the
float, PTQ and QAT top-1 accuracies on the eval split are reported side by
side in ``details`` (the pipeline's own evaluation judges the variant).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight
from optimizers.passes.common import copy_companion_files

#: ORT's integer kernels round differently from PyTorch's float emulation of Q/DQ: an image at a
#: decision boundary may flip, many may not.
MIN_EXPORT_AGREEMENT = 0.99


class QatConfig(PassConfig):
    steps: int = Field(200, ge=1, le=20_000, description="Fine-tuning steps with fake quantization (train split).")
    learning_rate: float = Field(5e-4, gt=0, le=1.0, description="Fine-tuning learning rate (AdamW).")
    batch_size: int = Field(64, ge=1, le=4096, description="Fine-tuning batch size.")
    seed: int = Field(0, description="Seed for the batch order.")
    compare_ptq: bool = Field(True, description="Also quantize without training (PTQ) and report both accuracies.")
    opset: int = Field(18, ge=17, le=21, description="ONNX opset of the exported INT8 graph.")
    reduce_range: bool | None = Field(
        None,
        description=(
            "7-bit activations (0..127). None: on when this CPU has no VNNI — ONNX Runtime's u8s8 "
            "kernels on plain AVX2 can saturate their 16-bit sums with full-range activations."
        ),
    )
    rtol: float = Field(
        0.02,
        gt=0,
        le=1.0,
        description=(
            "Largest |ORT − PyTorch| logit difference allowed (99th percentile over the calibration images), "
            "as a fraction of the largest |logit|."
        ),
    )


@register
class Qat(Pass):
    name = "qat"
    title = "Quantization-aware training (INT8)"
    description = (
        "Fine-tune an image classifier with INT8 fake quantization (torchao PT2E, conv and linear), convert, "
        "and export an INT8 QDQ ONNX model; reports PTQ vs QAT accuracy and the training-loss curve."
    )
    Config = QatConfig
    input_formats = ("torch",)
    tasks = ("image-classification",)
    output_format = "onnx"

    def preflight(self, artifact: ModelArtifact, config: QatConfig) -> Preflight:
        report = super().preflight(artifact, config)
        try:
            from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e  # noqa: F401
        except ImportError as error:
            raise PreflightError(f"qat needs torchao's PT2E quantization (torchao ≥ 0.13): {error}") from None
        report.estimated_seconds = 15.0 + 0.02 * config.steps
        return report

    def run(self, artifact: ModelArtifact, config: QatConfig, ctx: PassContext) -> ModelArtifact:
        import torch

        from optimizers.evaluation.images import digits_split
        from optimizers.models import load_torch_module, read_torch_config
        from optimizers.models.training import TrainSettings, accuracy, curve, train_classifier

        train_images, train_labels = digits_split("train")
        calibration_images, _ = digits_split("calibration")
        eval_images, eval_labels = digits_split("eval")
        float_model = load_torch_module(artifact)
        details: dict[str, Any] = {"float_accuracy": round(accuracy(float_model, eval_images, eval_labels), 6)}
        reduce_range = config.reduce_range if config.reduce_range is not None else not cpu_has_vnni()
        details["reduce_range"] = reduce_range

        if config.compare_ptq:
            ctx.progress(0.05, "PTQ for comparison: calibrating on the calibration split")
            shape = tuple(int(v) for v in read_torch_config(artifact).get("input_shape", (1, 8, 8)))
            ptq = _quantized_ptq(load_torch_module(artifact), shape, calibration_images, reduce_range)
            details["ptq_accuracy"] = round(accuracy(ptq, eval_images, eval_labels, set_eval_mode=False), 6)
            ctx.check_cancelled()

        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

        torch.manual_seed(config.seed)
        shape = tuple(int(v) for v in read_torch_config(artifact).get("input_shape", (1, 8, 8)))
        quantizer = _quantizer(is_qat=True, reduce_range=reduce_range)
        prepared = prepare_qat_pt2e(_export(load_torch_module(artifact).train(), shape), quantizer)
        move_exported_model_to_train(prepared)

        def on_step(step: int, steps: int, loss: float) -> None:
            if step % 10 == 0 or step == steps:
                ctx.progress(0.1 + 0.7 * step / steps, f"step {step} of {steps}, loss {loss:.3f}")

        settings = TrainSettings(
            steps=config.steps, learning_rate=config.learning_rate, batch_size=config.batch_size, seed=config.seed
        )
        losses = train_classifier(
            prepared,
            train_images,
            train_labels,
            settings,
            on_step=on_step,
            should_stop=ctx.should_cancel,
            set_train_mode=False,
        )
        ctx.check_cancelled()
        move_exported_model_to_eval(prepared)
        quantized = convert_pt2e(prepared)
        move_exported_model_to_eval(quantized)
        details["qat_accuracy"] = round(accuracy(quantized, eval_images, eval_labels, set_eval_mode=False), 6)
        details["training_curve"] = curve(losses)
        details["steps"] = len(losses)

        ctx.progress(0.85, "exporting the INT8 graph to ONNX (QuantizeLinear/DequantizeLinear)")
        out = ctx.work_dir
        out.mkdir(parents=True, exist_ok=True)
        onnx_path = out / "model.onnx"
        with torch.inference_mode():
            torch.onnx.export(
                quantized,
                (torch.from_numpy(calibration_images[:2]),),
                str(onnx_path),
                input_names=["pixel_values"],
                output_names=["logits"],
                dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", max=4096)}},
                opset_version=config.opset,
                dynamo=True,
                external_data=False,
            )
        copy_companion_files(artifact.folder, out)
        worst, scale, agreement = _verify(quantized, onnx_path, calibration_images)
        if worst > config.rtol * scale or agreement < MIN_EXPORT_AGREEMENT:
            raise PassError(
                f"ONNX Runtime's INT8 output differs from PyTorch's converted model by {worst:.2e} "
                f"(tolerance {config.rtol:g} × {scale:.2f}; top-1 agreement {agreement:.3f}, "
                f"at least {MIN_EXPORT_AGREEMENT} needed); not kept"
            )
        details["onnx_verified_max_abs_diff"] = worst
        details["notes"] = [
            "INT8 weights (per output channel) and uint8 activations (per tensor"
            + (", 7-bit range: this CPU has no VNNI" if reduce_range else "")
            + "), stored as an ONNX QDQ graph; ONNX Runtime runs it with integer kernels",
            "float, PTQ and QAT accuracies are top-1 on the eval split, measured in PyTorch in this pass",
        ]
        ctx.log(
            "accuracy float {float_accuracy:.4f}, PTQ {ptq}, QAT {qat_accuracy:.4f}".format(
                ptq=f"{details['ptq_accuracy']:.4f}" if "ptq_accuracy" in details else "not run", **details
            )
        )
        return ModelArtifact.from_folder(
            out,
            name=self.name,
            format="onnx",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={"precision": "int8-qat", "weight_bits": 8, "details": details},
        )


def cpu_has_vnni() -> bool:
    """Whether this CPU has AVX-512 VNNI or AVX-VNNI (exact u8s8 dot products in ONNX Runtime)."""
    from optimizers.capabilities import cpu_info

    return bool({"avx512_vnni", "avx_vnni"} & set(cpu_info()["flags"]))


def _quantizer(*, is_qat: bool, reduce_range: bool):
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    return X86InductorQuantizer().set_global(
        get_default_x86_inductor_quantization_config(is_qat=is_qat, reduce_range=reduce_range)
    )


def _export(module, shape: tuple[int, ...]):
    """``torch.export`` graph of ``module`` for images of ``shape`` (C, H, W), dynamic batch axis."""
    import torch

    sample = torch.zeros(2, *shape)
    batch = torch.export.Dim("batch", max=4096)
    return torch.export.export(module, (sample,), dynamic_shapes={"pixel_values": {0: batch}}).module()


def _quantized_ptq(module, shape: tuple[int, ...], calibration_images: np.ndarray, reduce_range: bool):
    """Post-training INT8 with the same quantizer: observers calibrated on ``calibration_images``."""
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(_export(module.eval(), shape), _quantizer(is_qat=False, reduce_range=reduce_range))
    with torch.inference_mode():
        for start in range(0, len(calibration_images), 64):
            prepared(torch.from_numpy(calibration_images[start : start + 64]))
    quantized = convert_pt2e(prepared)
    move_exported_model_to_eval(quantized)
    return quantized


def _verify(quantized, onnx_path, images: np.ndarray) -> tuple[float, float, float]:
    """(99th percentile over images of the largest |ORT − PyTorch| logit difference, largest |logit|,
    top-1 agreement) on ``images``.

    ORT runs the images as two batches of different sizes, so a frozen batch axis fails too.
    """
    import onnxruntime as ort

    from optimizers.models.training import predict_logits

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = predict_logits(quantized, images, set_eval_mode=False)
    got = np.concatenate(
        [session.run(None, {"pixel_values": images[:1]})[0], session.run(None, {"pixel_values": images[1:]})[0]]
    )
    if got.shape != expected.shape:
        raise PassError(f"ONNX output shape {got.shape} differs from PyTorch {expected.shape}")
    # The 99th percentile of each image's largest difference: ORT's integer kernels round
    # requantization differently from PyTorch's simulated Q/DQ, so one image in a few hundred
    # can land a step apart at a layer and carry that to its logits (3.4 of 28 seen once in CI,
    # same top-1). A wrong export moves every image, which this and the agreement still catch.
    worst = float(np.quantile(np.abs(got - expected).max(axis=1), 0.99))
    agreement = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
    return worst, float(np.max(np.abs(expected))), agreement
