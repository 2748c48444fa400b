"""``gptq``, ``awq`` and ``w8a8``: LLM weight quantization with llm-compressor (vLLM project).

Each pass loads a causal LM, runs llm-compressor's ``oneshot`` with its modifiers over
calibration windows (see ``llm_common.calibration_windows``) and writes a
compressed-tensors folder that ``AutoModelForCausalLM.from_pretrained`` loads (on a
CPU the weights are decompressed at load time: quality can be checked anywhere,
speed needs vLLM's kernels on a GPU).

- ``gptq``: ``GPTQModifier``, W4A16 by default (4-bit symmetric weights, group size 128).
- ``awq``: ``AWQModifier`` (activation-aware scaling, a grid search per layer) followed by
  ``QuantizationModifier``, W4A16_ASYM by default.
- ``w8a8``: ``SmoothQuantModifier`` (moves activation outliers into the weights) followed by
  ``GPTQModifier`` with W8A8 (8-bit weights per channel, 8-bit dynamic per-token activations).

``lm_head`` is left in full precision by default. The passes prefer a GPU worker; on a CPU
worker they run when the preflight estimate fits its memory and time budget.
"""

from __future__ import annotations

import importlib.metadata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight, Requirements
from optimizers.passes.common import copy_companion_files
from optimizers.passes.llm_common import (
    CostModel,
    calibration_windows,
    check_causal_lm,
    check_fits_worker,
    check_group_size,
    cuda_available,
    estimate_resources,
    load_calibration_texts,
    read_model_shape,
    safetensors_header,
    staged_output,
)

#: ``ModelArtifact.metadata["weights"]`` of these passes' outputs.
COMPRESSED_TENSORS_MARKER = "compressed-tensors"

_REQUIRES = Requirements(device="cpu", prefers_gpu=True, packages=("llmcompressor", "compressed_tensors"))


class _CalibrationConfig(PassConfig):
    num_calibration_samples: int = Field(
        64, ge=1, le=4096, description="Calibration windows of max_seq_length tokens (more: slower, steadier)."
    )
    max_seq_length: int = Field(256, ge=16, le=8192, description="Tokens per calibration window.")
    calibration_dataset: str | None = Field(
        None,
        description=(
            "Calibration text: empty for the built-in calibration split of the tiny-LM corpus "
            '(disjoint from its evaluation split), or a JSONL file of {"text": ...} lines.'
        ),
    )
    ignore: list[str] = Field(
        default_factory=lambda: ["lm_head"],
        description="Layers left in full precision (names, or re:<regex>).",
    )


class GptqConfig(_CalibrationConfig):
    scheme: Literal["W4A16", "W4A16_ASYM", "W8A16"] = Field(
        "W4A16", description="Weight bits and symmetry (activations stay 16-bit)."
    )
    group_size: Literal[32, 64, 128, 256] | None = Field(
        128, description="Weights per quantization scale; empty for one scale per output channel."
    )
    dampening_frac: float = Field(0.01, gt=0, lt=1, description="GPTQ Hessian dampening (fraction of its mean).")


class AwqConfig(_CalibrationConfig):
    scheme: Literal["W4A16_ASYM", "W4A16"] = Field("W4A16_ASYM", description="Weight bits and symmetry.")
    group_size: Literal[32, 64, 128, 256] | None = Field(
        128, description="Weights per quantization scale; empty for one scale per output channel."
    )
    n_grid: int = Field(20, ge=2, le=100, description="Scales tried per layer in AWQ's grid search.")
    duo_scaling: bool = Field(True, description="Use weight as well as activation magnitudes to pick scales.")


class W8A8Config(_CalibrationConfig):
    scheme: Literal["W8A8"] = Field("W8A8", description="INT8 weights per channel, INT8 dynamic per-token activations.")
    smoothing_strength: float = Field(
        0.8, ge=0, le=1, description="SmoothQuant alpha: how much activation range moves into the weights."
    )


class _LlmCompressorPass(Pass):
    """Shared preflight/run; subclasses give the cost model and the llm-compressor recipe."""

    input_formats = ("hf",)
    tasks = ("causal-lm",)
    output_format = "hf"
    requires = _REQUIRES
    cost: ClassVar[CostModel]

    # ------------------------------------------------------------------ contract

    def estimate(self, artifact: ModelArtifact, config: Any, *, on_gpu: bool) -> Preflight:
        shape = read_model_shape(artifact.folder)
        tokens = config.num_calibration_samples * config.max_seq_length
        return estimate_resources(self._cost(config), shape, tokens=tokens, on_gpu=on_gpu)

    def preflight(self, artifact: ModelArtifact, config: Any) -> Preflight:
        shape = check_causal_lm(self.name, artifact)
        base = super().preflight(artifact, config)
        _check_scheme_known(config.scheme)
        check_group_size(self.name, artifact.folder, getattr(config, "group_size", None), config.ignore)
        windows = self._windows(artifact, config)
        on_gpu = cuda_available()
        result = estimate_resources(self._cost(config), shape, tokens=windows.total_tokens, on_gpu=on_gpu)
        check_fits_worker(self.name, result, on_gpu=on_gpu)
        result.notes += base.notes + windows.notes
        return result

    def run(self, artifact: ModelArtifact, config: Any, ctx: PassContext) -> ModelArtifact:
        import torch
        from transformers import AutoModelForCausalLM

        on_gpu = cuda_available()
        ctx.progress(0.02, "tokenizing calibration text")
        windows = self._windows(artifact, config)
        shape = read_model_shape(artifact.folder)
        estimate = estimate_resources(self._cost(config), shape, tokens=windows.total_tokens, on_gpu=on_gpu)
        ctx.log(estimate.notes[0])
        ctx.check_cancelled()
        ctx.progress(0.05, "loading the model")
        model = AutoModelForCausalLM.from_pretrained(
            artifact.folder,
            dtype="auto" if on_gpu else torch.float32,
            trust_remote_code=False,
            local_files_only=True,
        ).eval()
        ctx.progress(0.1, f"calibrating on {len(windows.input_ids)} windows and quantizing ({config.scheme})")
        self._oneshot(model, windows, config)
        ctx.check_cancelled()
        ctx.progress(0.85, "saving compressed-tensors weights")
        with staged_output(ctx.work_dir) as staging:
            copy_companion_files(artifact.folder, staging)
            model.save_pretrained(staging, save_compressed=True)  # overwrites config.json with the quant config
            del model
            ctx.progress(0.93, "verifying that the saved model reloads")
            _verify_reload(staging, windows.input_ids[0])
        quantized = _quantized_layer_count(ctx.work_dir)
        ctx.log(f"{config.scheme}: {quantized} Linear layers quantized, {', '.join(config.ignore) or 'none'} kept")
        return ModelArtifact.from_folder(
            ctx.work_dir,
            name=self.name,
            format="hf",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={
                "weights": COMPRESSED_TENSORS_MARKER,
                "scheme": config.scheme,
                "group_size": getattr(config, "group_size", None),
                "ignore": list(config.ignore),
                "quantized_layers": quantized,
                "precision": _precision(config.scheme),
                "calibration": {
                    "dataset": windows.source,
                    "samples": len(windows.input_ids),
                    "seq_len": config.max_seq_length,
                    "tokens": windows.total_tokens,
                    "texts": windows.texts_used,
                },
                "estimate": {
                    "seconds": estimate.estimated_seconds,
                    "memory_mb": estimate.estimated_memory_mb,
                    "device": "cuda" if on_gpu else "cpu",
                },
                "quantized_on": "cuda" if on_gpu else "cpu",
                "quantizer_versions": _versions("llmcompressor", "compressed-tensors"),
            },
        )

    # ------------------------------------------------------------------ subclass hooks

    def _cost(self, config: Any) -> CostModel:
        return self.cost

    def _recipe(self, config: Any) -> list[Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers

    def _windows(self, artifact: ModelArtifact, config: Any):
        tokenizer = _load_tokenizer(artifact)
        name, texts = load_calibration_texts(config.calibration_dataset)
        return calibration_windows(
            tokenizer, name, texts, samples=config.num_calibration_samples, seq_len=config.max_seq_length
        )

    def _oneshot(self, model: Any, windows: Any, config: Any) -> None:
        from datasets import Dataset
        from llmcompressor import oneshot

        dataset = Dataset.from_dict(
            {"input_ids": windows.input_ids, "attention_mask": [[1] * len(ids) for ids in windows.input_ids]}
        )
        with _no_pinned_memory_without_cuda():
            oneshot(
                model=model,
                dataset=dataset,
                recipe=self._recipe(config),
                num_calibration_samples=len(windows.input_ids),
                max_seq_length=config.max_seq_length,
                shuffle_calibration_samples=False,
                output_dir=None,
            )


def _scheme(name: str, group_size: int | None) -> Any:
    """The compressed-tensors preset ``name`` targeting Linear layers, with ``group_size`` applied."""
    from compressed_tensors.quantization import preset_name_to_scheme

    scheme = preset_name_to_scheme(name, ["Linear"])
    weights = scheme.weights
    if weights is not None and weights.strategy in ("group", "channel"):
        if group_size:
            update: dict[str, Any] = {"strategy": "group", "group_size": group_size}
        else:
            update = {"strategy": "channel", "group_size": None}
        scheme = scheme.model_copy(update={"weights": weights.model_copy(update=update)})
    return scheme


@register
class Gptq(_LlmCompressorPass):
    name = "gptq"
    title = "GPTQ weight quantization (llm-compressor)"
    description = (
        "GPTQ: 4-bit (W4A16, group size 128) or 8-bit weights chosen to minimize each layer's output error "
        "on calibration text; compressed-tensors output for vLLM. Prefers a GPU worker."
    )
    Config = GptqConfig
    cost = CostModel(forward_passes=3.0, memory_factor=2.5, fixed_seconds=15.0, seconds_per_layer=4.0)

    def _recipe(self, config: GptqConfig) -> list[Any]:
        from llmcompressor.modifiers.quantization import GPTQModifier

        return [
            GPTQModifier(
                config_groups={"group_0": _scheme(config.scheme, config.group_size)},
                ignore=list(config.ignore),
                dampening_frac=config.dampening_frac,
            )
        ]


@register
class Awq(_LlmCompressorPass):
    name = "awq"
    title = "AWQ weight quantization (llm-compressor)"
    description = (
        "Activation-aware weight quantization: per-channel scales found by a grid search on calibration text "
        "protect the weights that matter most, then 4-bit weights (W4A16_ASYM). Prefers a GPU worker."
    )
    Config = AwqConfig
    cost = CostModel(forward_passes=3.0, memory_factor=3.0, fixed_seconds=15.0, seconds_per_layer=6.0)

    def _cost(self, config: AwqConfig) -> CostModel:
        # Every grid point re-runs each smoothed block over all calibration tokens.
        per_point = 0.6
        return CostModel(
            forward_passes=self.cost.forward_passes + per_point * config.n_grid,
            memory_factor=self.cost.memory_factor,
            fixed_seconds=self.cost.fixed_seconds,
            seconds_per_layer=self.cost.seconds_per_layer * config.n_grid / 10,
        )

    def _recipe(self, config: AwqConfig) -> list[Any]:
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform import AWQModifier

        return [
            AWQModifier(n_grid=config.n_grid, duo_scaling=config.duo_scaling),
            QuantizationModifier(
                config_groups={"group_0": _scheme(config.scheme, config.group_size)}, ignore=list(config.ignore)
            ),
        ]


@register
class W8A8(_LlmCompressorPass):
    name = "w8a8"
    title = "W8A8 INT8 (SmoothQuant + GPTQ, llm-compressor)"
    description = (
        "SmoothQuant moves activation outliers into the weights, then GPTQ quantizes weights to INT8 per channel; "
        "activations are quantized to INT8 per token at run time. Prefers a GPU worker."
    )
    Config = W8A8Config
    cost = CostModel(forward_passes=4.0, memory_factor=2.5, fixed_seconds=15.0, seconds_per_layer=5.0)

    def _recipe(self, config: W8A8Config) -> list[Any]:
        from llmcompressor.modifiers.quantization import GPTQModifier
        from llmcompressor.modifiers.transform import SmoothQuantModifier

        return [
            SmoothQuantModifier(smoothing_strength=config.smoothing_strength),
            GPTQModifier(config_groups={"group_0": _scheme(config.scheme, None)}, ignore=list(config.ignore)),
        ]


@contextmanager
def _no_pinned_memory_without_cuda():
    """Skip llm-compressor's page-locking of cached activations when there is no CUDA.

    llm-compressor 0.14's AWQ pins its activation cache before each grid search
    (``AWQModifier._apply_smoothing`` → ``IntermediatesCache.pin_memory``); pinning needs an
    accelerator, so on a CPU-only torch it raises "Cannot access accelerator device".
    Pinned memory only speeds host→GPU copies, so without CUDA pinning is a no-op. This is
    the one place the library is patched, only for the duration of ``oneshot``, and only
    without CUDA; drop it once llm-compressor checks for an accelerator itself.
    """
    import torch

    if torch.cuda.is_available():
        yield
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original


def _check_scheme_known(scheme: str) -> None:
    from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES

    if scheme not in PRESET_SCHEMES:
        version = _versions("compressed-tensors").get("compressed-tensors", "?")
        raise PreflightError(
            f"quantization scheme {scheme!r} is not known to compressed-tensors {version}; "
            f"known: {', '.join(sorted(PRESET_SCHEMES))}"
        )


def _load_tokenizer(artifact: ModelArtifact) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError) as error:
        raise PreflightError(f"'{artifact.name}' has no usable tokenizer for calibration: {error}") from None


def _verify_reload(folder: Path, input_ids: list[int]) -> None:
    """Reload the saved folder as transformers would and check one forward pass is finite."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False, local_files_only=True).eval()
    with torch.inference_mode():
        logits = model(torch.tensor([input_ids[:64]])).logits
    if not torch.isfinite(logits).all():
        raise PassError("the quantized model produces non-finite logits after reloading")


def _quantized_layer_count(folder: Path) -> int:
    """Linear layers stored quantized (compressed-tensors keeps one ``weight_scale`` per layer)."""
    names = [name for file in folder.glob("*.safetensors") for name in safetensors_header(file)]
    return sum(1 for name in names if name.endswith(".weight_scale"))


def _precision(scheme: str) -> str:
    return {"W4A16": "int4-weight", "W4A16_ASYM": "int4-weight", "W8A16": "int8-weight", "W8A8": "int8"}.get(
        scheme, scheme.lower()
    )


def _versions(*names: str) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
