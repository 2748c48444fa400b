"""``onnx_export``: PyTorch → ONNX, verified against PyTorch.

Three inputs are accepted: a Hugging Face encoder folder (``hf``,
feature-extraction; dynamic batch and sequence axes, output
``last_hidden_state``), a Hugging Face causal LM (``hf``, causal-lm; see
below) and an InferOpt-native module (``torch``, image-classification, e.g.
``zoo:digits-cnn``; input ``pixel_values`` N×C×H×W with a dynamic batch axis,
output ``logits``).

A causal LM is exported with its KV cache as explicit tensors, so decoding
runs one token per step: inputs ``input_ids`` (batch × sequence) and
``past_key_values.{i}.key`` / ``.value`` (batch × kv-heads × past × head-dim,
past length 0 for a fresh sequence); outputs ``logits`` (batch × sequence ×
vocab) and ``present.{i}.key`` / ``.value`` (past + sequence long). Positions
follow from the past length; there is no ``attention_mask`` input, so the
rows of a batch must not be padded. Only the dynamo exporter can trace the
cache (a ``torchscript`` export of a causal LM is refused in preflight).

After export the graph is run in ONNX Runtime on inputs of two different
shapes (so a frozen axis is caught) and compared with PyTorch; a difference
above ``atol`` fails the pass loudly instead of shipping a wrong model. A
causal LM is checked on a fresh sequence (batch 1) and on a batch of 2 fed
as a prefix and then the rest through the returned cache, against PyTorch's
full-sequence logits.
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
        "Export a Hugging Face encoder (dynamic batch and sequence axes), a causal LM (with its KV cache "
        "as inputs and outputs) or an image classifier (dynamic batch axis) to ONNX and verify ONNX "
        "Runtime's output against PyTorch."
    )
    Config = OnnxExportConfig
    input_formats = ("hf", "torch")
    tasks = ("feature-extraction", "causal-lm", "image-classification")
    output_format = "onnx"

    def preflight(self, artifact: ModelArtifact, config: PassConfig) -> Preflight:
        report = super().preflight(artifact, config)
        expected_tasks = {"hf": ("feature-extraction", "causal-lm"), "torch": ("image-classification",)}
        if artifact.task not in expected_tasks[artifact.format]:
            raise PreflightError(
                f"onnx_export exports {artifact.format} models for {' or '.join(expected_tasks[artifact.format])} "
                f"only; '{artifact.name}' is {artifact.task}"
            )
        if artifact.task == "causal-lm" and config.exporter != "dynamo":
            raise PreflightError(
                "onnx_export needs the dynamo exporter for causal LMs (the TorchScript tracer cannot "
                "export the KV cache); remove exporter: torchscript"
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
        if artifact.task == "causal-lm":
            return self._export_causal_lm(artifact, config, ctx)
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
        return self._keep_if_verified(
            artifact, config, ctx, worst, "output", "over two input shapes", {"inputs": input_names}
        )

    def _export_causal_lm(self, artifact: ModelArtifact, config: OnnxExportConfig, ctx: PassContext) -> ModelArtifact:
        """``hf`` causal LM → ONNX with the KV cache as explicit inputs and outputs (see the module docstring)."""
        import torch
        from transformers import AutoModelForCausalLM

        from optimizers.runtimes import load_tokenizer

        out = ctx.work_dir
        out.mkdir(parents=True, exist_ok=True)
        model = AutoModelForCausalLM.from_pretrained(
            artifact.folder, trust_remote_code=False, local_files_only=True, attn_implementation="eager"
        ).eval()
        tokenizer = load_tokenizer(artifact)
        sample = torch.tensor([_token_ids(tokenizer, text)[:6] for text in _VERIFY_TEXTS[1:]], dtype=torch.long)
        with torch.inference_mode():
            cache = model(input_ids=sample, use_cache=True).past_key_values
        layers = getattr(cache, "layers", None)
        if not layers or not all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
            raise PassError(f"{type(cache).__name__} is not a per-layer key/value cache; onnx_export cannot export it")
        # A past of 3 positions (not 0 or 1, which torch.export would freeze as constants).
        past = [tensor[:, :, :3].contiguous() for layer in layers for tensor in (layer.keys, layer.values)]
        past_names = [f"past_key_values.{i}.{kind}" for i in range(len(layers)) for kind in ("key", "value")]
        present_names = [name.replace("past_key_values.", "present.") for name in past_names]
        batch_dim = torch.export.Dim("batch", max=4096)
        seq_dim, past_dim = torch.export.Dim("sequence", max=8192), torch.export.Dim("past_sequence", max=8192)
        shapes = ({0: batch_dim, 1: seq_dim}, tuple({0: batch_dim, 2: past_dim} for _ in past_names))
        # Protobuf caps one file at 2 GB: larger models keep their weights in model.onnx.data.
        external = sum(p.numel() * p.element_size() for p in model.parameters()) > 1_800_000_000
        ctx.log(f"exporting with the dynamo exporter, opset {config.opset}, KV cache of {len(layers)} layers")
        ctx.progress(0.1, "exporting")
        onnx_path = out / "model.onnx"
        with torch.inference_mode():
            torch.onnx.export(
                _CausalLM(model, len(layers)).eval(),
                (sample, *past),
                str(onnx_path),
                input_names=["input_ids", *past_names],
                output_names=["logits", *present_names],
                dynamic_shapes=shapes,
                opset_version=config.opset,
                dynamo=True,
                external_data=external,
            )
        copy_companion_files(artifact.folder, out)
        ctx.progress(0.7, "verifying against PyTorch")
        worst = _verify_causal_lm(model, tokenizer, onnx_path, past_names, tuple(past[0].shape))
        return self._keep_if_verified(
            artifact,
            config,
            ctx,
            worst,
            "logits",
            "(fresh sequence; prefix + cached rest)",
            {"inputs": ["input_ids"], "kv_cache": True, "cache_layers": len(layers)},
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
        return self._keep_if_verified(
            artifact, config, ctx, worst, "output", "over two batch sizes", {"inputs": ["pixel_values"]}
        )

    def _keep_if_verified(
        self,
        artifact: ModelArtifact,
        config: OnnxExportConfig,
        ctx: PassContext,
        worst: float,
        compared: str,
        checked_on: str,
        metadata: dict,
    ) -> ModelArtifact:
        """The exported folder as an artifact if ORT's ``compared`` values are within ``atol`` of
        PyTorch's (``worst`` = largest difference found), else ``PassError`` (nothing is kept)."""
        if worst > config.atol:
            raise PassError(
                f"ONNX Runtime {compared} differ{'s' if compared == 'output' else ''} from PyTorch by {worst:.2e} "
                f"(tolerance {config.atol:.0e}); the export is wrong and was not kept"
            )
        what = "difference" if compared == "output" else f"{compared} difference"
        ctx.log(f"verified: max abs {what} to PyTorch {worst:.2e} {checked_on}")
        return ModelArtifact.from_folder(
            ctx.work_dir,
            name="onnx_export",
            format="onnx",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={"verified_max_abs_diff": worst, "opset": config.opset, **metadata},
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


def _token_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def _causal_lm_class():
    import torch
    from transformers import DynamicCache

    class CausalLM(torch.nn.Module):
        """``input_ids`` and a flat past (key, value per layer) in; logits and the flat present out."""

        def __init__(self, inner: torch.nn.Module, num_layers: int) -> None:
            super().__init__()
            self.inner = inner
            self.num_layers = num_layers

        def forward(self, input_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            pairs = [(past[2 * i], past[2 * i + 1]) for i in range(self.num_layers)]
            cache = DynamicCache(ddp_cache_data=pairs, config=self.inner.config)
            output = self.inner(input_ids=input_ids, past_key_values=cache, use_cache=True)
            present = [tensor for layer in output.past_key_values.layers for tensor in (layer.keys, layer.values)]
            return (output.logits, *present)

    return CausalLM


def _CausalLM(inner, num_layers):  # noqa: N802 - reads like the class it builds
    return _causal_lm_class()(inner, num_layers)


def _verify_causal_lm(model, tokenizer, onnx_path, past_names: list[str], past_shape: tuple[int, ...]) -> float:
    """Largest |ORT − PyTorch| logits difference over two checks.

    (1) one fresh sequence (empty past); (2) a batch of two sequences fed as a
    prefix, then their last 3 tokens through the returned ``present`` cache.
    Both are compared with PyTorch's full-sequence logits (no cache).
    """
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def empty(batch: int) -> dict[str, np.ndarray]:
        shape = (batch, past_shape[1], 0, past_shape[3])
        return {name: np.zeros(shape, dtype=np.float32) for name in past_names}

    def expected(ids: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(input_ids=torch.from_numpy(ids), use_cache=False).logits.float().numpy()

    single = np.array([_token_ids(tokenizer, _VERIFY_TEXTS[0])], dtype=np.int64)
    got = session.run(["logits"], {"input_ids": single, **empty(1)})[0]
    want = expected(single)
    if got.shape != want.shape:
        raise PassError(f"ONNX logits shape {got.shape} differs from PyTorch {want.shape}")
    worst = float(np.max(np.abs(got - want)))

    rows = [_token_ids(tokenizer, text) for text in _VERIFY_TEXTS[1:]]
    length = min(len(row) for row in rows)
    pair = np.array([row[:length] for row in rows], dtype=np.int64)
    want = expected(pair)
    first = session.run(None, {"input_ids": pair[:, :-3], **empty(2)})
    rest = session.run(None, {"input_ids": pair[:, -3:], **dict(zip(past_names, first[1:], strict=True))})
    got = np.concatenate([first[0], rest[0]], axis=1)
    if got.shape != want.shape or rest[1].shape[2] != length:
        raise PassError(f"ONNX logits/cache shapes {got.shape}, {rest[1].shape} do not match PyTorch {want.shape}")
    return max(worst, float(np.max(np.abs(got - want))))
