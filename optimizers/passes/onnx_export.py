"""``onnx_export``: PyTorch → ONNX, verified against PyTorch.

Two inputs are accepted: a Hugging Face encoder folder (``hf``,
feature-extraction; dynamic batch and sequence axes, output
``last_hidden_state``) and an InferOpt-native module (``torch``,
image-classification, e.g. ``zoo:digits-cnn``; input ``pixel_values``
N×C×H×W with a dynamic batch axis, output ``logits``).

After export the graph is run in ONNX Runtime on inputs of two different
shapes (so a frozen axis is caught) and compared with PyTorch; a difference
above ``atol`` fails the pass loudly instead of shipping a wrong model.
"""

from __future__ import annotations

import inspect
from typing import Literal

import numpy as np
from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight
from optimizers.passes.common import copy_companion_files

_VERIFY_TEXTS = [
    "Measure before optimizing.",
    "The quick brown fox jumps over the lazy dog while the benchmark keeps running for a while longer.",
    "No optimization is accepted without evaluation against a held-out set.",
]


class OnnxExportConfig(PassConfig):
    opset: int = Field(18, ge=17, le=21, description="ONNX opset version (17 or newer).")
    exporter: Literal["torchscript", "dynamo"] = Field(
        "dynamo",
        description="torch.onnx exporter: dynamo (torch.export, default) or the older TorchScript tracer "
        "(it mis-traces transformers 5 attention masks; the verification step catches that).",
    )
    atol: float = Field(1e-3, gt=0, le=1.0, description="Largest absolute difference allowed against PyTorch.")


@register
class OnnxExport(Pass):
    name = "onnx_export"
    title = "ONNX export"
    description = (
        "Export a Hugging Face encoder (dynamic batch and sequence axes) or an image classifier "
        "(dynamic batch axis) to ONNX and verify ONNX Runtime's output against PyTorch."
    )
    Config = OnnxExportConfig
    input_formats = ("hf", "torch")
    tasks = ("feature-extraction", "image-classification")
    output_format = "onnx"

    def preflight(self, artifact: ModelArtifact, config: PassConfig) -> Preflight:
        report = super().preflight(artifact, config)
        expected_task = {"hf": "feature-extraction", "torch": "image-classification"}[artifact.format]
        if artifact.task != expected_task:
            raise PreflightError(
                f"onnx_export exports {artifact.format} models for {expected_task} only; "
                f"'{artifact.name}' is {artifact.task}"
            )
        if artifact.metadata.get("weights"):
            raise PreflightError(
                f"{artifact.name} holds PyTorch-quantized weights, which ONNX export does not support; "
                "export the floating-point model and quantize in ONNX Runtime instead"
            )
        report.estimated_seconds = 30.0
        return report

    def run(self, artifact: ModelArtifact, config: OnnxExportConfig, ctx: PassContext) -> ModelArtifact:
        if artifact.format == "torch":
            return self._export_image_classifier(artifact, config, ctx)
        import torch
        from transformers import AutoModel

        from optimizers.runtimes import load_tokenizer

        out = ctx.work_dir
        out.mkdir(parents=True, exist_ok=True)
        model = AutoModel.from_pretrained(
            artifact.folder, trust_remote_code=False, local_files_only=True, attn_implementation="eager"
        ).eval()
        tokenizer = load_tokenizer(artifact)
        accepted = set(inspect.signature(model.forward).parameters)
        sample = tokenizer(_VERIFY_TEXTS[:2], padding=True, return_tensors="pt")
        input_names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
        input_names = [name for name in input_names if name in accepted]

        wrapper = _Encoder(model, input_names)
        axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
        axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
        batch_dim, seq_dim = torch.export.Dim("batch", max=4096), torch.export.Dim("sequence", max=8192)
        shapes = {name: {0: batch_dim, 1: seq_dim} for name in input_names}
        ctx.log(f"exporting with the {config.exporter} exporter, opset {config.opset}")
        ctx.progress(0.1, "exporting")
        onnx_path = out / "model.onnx"
        with torch.inference_mode():
            dynamo = config.exporter == "dynamo"
            torch.onnx.export(
                wrapper,
                tuple(sample[name] for name in input_names),
                str(onnx_path),
                input_names=input_names,
                output_names=["last_hidden_state"],
                dynamic_axes=None if dynamo else axes,
                dynamic_shapes=shapes if dynamo else None,
                opset_version=config.opset,
                dynamo=dynamo,
                external_data=False,
            )
        copy_companion_files(artifact.folder, out)
        ctx.progress(0.7, "verifying against PyTorch")
        worst = _verify(model, tokenizer, onnx_path, input_names)
        if worst > config.atol:
            raise PassError(
                f"ONNX Runtime output differs from PyTorch by {worst:.2e} (tolerance {config.atol:.0e}); "
                "the export is wrong and was not kept"
            )
        ctx.log(f"verified: max abs difference to PyTorch {worst:.2e} over two input shapes")
        return ModelArtifact.from_folder(
            out,
            name="onnx_export",
            format="onnx",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={"verified_max_abs_diff": worst, "opset": config.opset, "inputs": input_names},
        )

    def _export_image_classifier(
        self, artifact: ModelArtifact, config: OnnxExportConfig, ctx: PassContext
    ) -> ModelArtifact:
        """``torch`` module → ONNX: ``pixel_values`` (dynamic batch) in, ``logits`` out."""
        import torch

        from optimizers.evaluation.images import digits_split
        from optimizers.models import load_torch_module, read_torch_config

        out = ctx.work_dir
        out.mkdir(parents=True, exist_ok=True)
        module = load_torch_module(artifact)
        shape = tuple(int(v) for v in read_torch_config(artifact).get("input_shape", (1, 8, 8)))
        # Export and verify on real digits from the calibration split (never the eval split);
        # a model for another image size gets deterministic noise of its shape instead.
        images, _ = digits_split("calibration")
        if images.shape[1:] != shape:
            images = np.random.default_rng(0).random((8, *shape), dtype=np.float32)
        sample = torch.from_numpy(images[:2])
        ctx.log(f"exporting with the {config.exporter} exporter, opset {config.opset}")
        ctx.progress(0.1, "exporting")
        onnx_path = out / "model.onnx"
        dynamo = config.exporter == "dynamo"
        with torch.inference_mode():
            torch.onnx.export(
                module,
                (sample,),
                str(onnx_path),
                input_names=["pixel_values"],
                output_names=["logits"],
                dynamic_axes=None if dynamo else {"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", max=4096)}} if dynamo else None,
                opset_version=config.opset,
                dynamo=dynamo,
                external_data=False,
            )
        copy_companion_files(artifact.folder, out)
        ctx.progress(0.7, "verifying against PyTorch")
        worst = _verify_images(module, onnx_path, [images[:1], images[: min(7, len(images))]])
        if worst > config.atol:
            raise PassError(
                f"ONNX Runtime output differs from PyTorch by {worst:.2e} (tolerance {config.atol:.0e}); "
                "the export is wrong and was not kept"
            )
        ctx.log(f"verified: max abs difference to PyTorch {worst:.2e} over two batch sizes")
        return ModelArtifact.from_folder(
            out,
            name="onnx_export",
            format="onnx",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={"verified_max_abs_diff": worst, "opset": config.opset, "inputs": ["pixel_values"]},
        )


def _verify_images(module, onnx_path, batches: list[np.ndarray]) -> float:
    """Largest |ORT − PyTorch| logits difference over image batches of different sizes."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in batches:
        with torch.inference_mode():
            expected = module(torch.from_numpy(batch)).numpy()
        got = session.run(None, {"pixel_values": batch.astype(np.float32)})[0]
        if got.shape != expected.shape:
            raise PassError(f"ONNX output shape {got.shape} differs from PyTorch {expected.shape}")
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def _encoder_class():
    import torch

    class Encoder(torch.nn.Module):
        """Named token inputs in, ``last_hidden_state`` out: a stable ONNX signature."""

        def __init__(self, inner: torch.nn.Module, input_names: list[str]) -> None:
            super().__init__()
            self.inner = inner
            self.input_names = input_names

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor | None = None,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(**{name: given[name] for name in self.input_names}).last_hidden_state

    return Encoder


def _Encoder(inner, input_names):  # noqa: N802 - reads like the class it builds
    return _encoder_class()(inner, input_names)


def _verify(model, tokenizer, onnx_path, input_names: list[str]) -> float:
    """Largest |ORT − PyTorch| over two batches of different shapes."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for texts in (_VERIFY_TEXTS[:1], _VERIFY_TEXTS):
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            expected = model(**{name: batch[name] for name in input_names}).last_hidden_state.numpy()
        got = session.run(None, {name: batch[name].numpy().astype(np.int64) for name in input_names})[0]
        if got.shape != expected.shape:
            raise PassError(f"ONNX output shape {got.shape} differs from PyTorch {expected.shape}")
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst
