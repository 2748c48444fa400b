"""``int4_weight_only``: torchao 4-bit weight-only quantization of a causal LM's Linear layers.

No calibration: each group of ``group_size`` weights gets its own scale (round to
nearest). The torchao configuration depends on the worker:

- CPU: ``IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(g))`` on FP32
  weights (``Int4WeightOnlyConfig`` has no CPU kernels). The weights are stored as int4
  values in int8 containers with their scales, and dequantized at run time.
- CUDA: ``Int4WeightOnlyConfig(group_size=g, int4_packing_format="tile_packed_to_4d")`` on
  bfloat16 weights, the tinygemm layout that PyTorch's own CUDA int4 matmul runs (the
  default "plain" layout needs the separate mslk/fbgemm kernels). Such an artifact loads
  only on a CUDA machine (``metadata["requires_cuda"]``).

Either way the folder is transformers' torchao format in safetensors (no pickle):
``AutoModelForCausalLM.from_pretrained`` rebuilds the quantized tensors from it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight, Requirements
from optimizers.passes.common import copy_companion_files
from optimizers.passes.llm_common import (
    CostModel,
    check_causal_lm,
    check_fits_worker,
    check_group_size,
    cuda_available,
    estimate_resources,
    read_model_shape,
    staged_output,
)

TORCHAO_MARKER = "torchao"


class Int4WeightOnlyPassConfig(PassConfig):
    group_size: Literal[32, 64, 128, 256] = Field(32, description="Weights per scale (smaller: more accurate, larger).")
    ignore: list[str] = Field(
        default_factory=lambda: ["lm_head"],
        description="Layers left in full precision (names, or re:<regex>).",
    )


@register
class Int4WeightOnly(Pass):
    name = "int4_weight_only"
    title = "INT4 weight-only (torchao)"
    description = (
        "4-bit weights with one scale per group, no calibration (torchao). CPU: IntxWeightOnlyConfig; "
        "CUDA: Int4WeightOnlyConfig (tinygemm layout, loads only on CUDA)."
    )
    Config = Int4WeightOnlyPassConfig
    input_formats = ("hf",)
    tasks = ("causal-lm",)
    output_format = "hf"
    requires = Requirements(device="cpu", packages=("torchao",))
    cost = CostModel(forward_passes=0.0, memory_factor=2.0, fixed_seconds=5.0, seconds_per_layer=0.2)

    def estimate(self, artifact: ModelArtifact, config: Int4WeightOnlyPassConfig, *, on_gpu: bool) -> Preflight:
        return estimate_resources(self.cost, read_model_shape(artifact.folder), tokens=0, on_gpu=on_gpu)

    def preflight(self, artifact: ModelArtifact, config: Int4WeightOnlyPassConfig) -> Preflight:
        shape = check_causal_lm(self.name, artifact)
        base = super().preflight(artifact, config)
        check_group_size(self.name, artifact.folder, config.group_size, config.ignore)
        on_gpu = cuda_available()
        result = estimate_resources(self.cost, shape, tokens=0, on_gpu=on_gpu)
        check_fits_worker(self.name, result, on_gpu=on_gpu)
        result.notes += base.notes
        return result

    def run(self, artifact: ModelArtifact, config: Int4WeightOnlyPassConfig, ctx: PassContext) -> ModelArtifact:
        import torch
        from transformers import AutoModelForCausalLM, TorchAoConfig

        on_gpu = cuda_available()
        quant_type, layout = _torchao_config(config.group_size, on_gpu=on_gpu)
        ctx.progress(0.1, f"loading and quantizing to int4 ({layout})")
        model = AutoModelForCausalLM.from_pretrained(
            artifact.folder,
            dtype=torch.bfloat16 if on_gpu else torch.float32,
            device_map="cuda" if on_gpu else None,
            quantization_config=TorchAoConfig(
                quant_type=quant_type, modules_to_not_convert=_as_transformers_patterns(config.ignore)
            ),
            trust_remote_code=False,
            local_files_only=True,
        ).eval()
        quantized = _quantized_linears(model)
        if not quantized:
            raise PassError("no Linear layer was quantized (all ignored, or none divisible by the group size)")
        ctx.check_cancelled()
        ctx.progress(0.7, "saving")
        with staged_output(ctx.work_dir) as staging:
            copy_companion_files(artifact.folder, staging)
            model.save_pretrained(staging)
            probe = torch.arange(16).unsqueeze(0) % max(model.config.vocab_size, 1)
            with torch.inference_mode():
                expected = model(probe.to(model.device)).logits.float().cpu()
            del model
            ctx.progress(0.85, "verifying that the saved model reloads")
            _verify_reload(staging, probe, expected, on_gpu=on_gpu)
        ctx.log(f"{len(quantized)} Linear layers to int4 ({layout}, group size {config.group_size})")
        return ModelArtifact.from_folder(
            ctx.work_dir,
            name=self.name,
            format="hf",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={
                "weights": TORCHAO_MARKER,
                "precision": "int4-weight",
                "torchao_config": layout,
                "group_size": config.group_size,
                "ignore": list(config.ignore),
                "quantized_layers": len(quantized),
                "quantized_on": "cuda" if on_gpu else "cpu",
                "requires_cuda": on_gpu,
                "estimate": {"device": "cuda" if on_gpu else "cpu", **_estimate_dict(self.cost, artifact, on_gpu)},
            },
        )


def _torchao_config(group_size: int, *, on_gpu: bool) -> tuple[Any, str]:
    import torch

    if on_gpu:
        from torchao.quantization import Int4WeightOnlyConfig

        return Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d"), (
            "Int4WeightOnlyConfig(tile_packed_to_4d)"
        )
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size)), "IntxWeightOnlyConfig(int4)"


def _quantized_linears(model: Any) -> list[str]:
    import torch

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and type(module.weight).__module__.startswith("torchao")
    ]


def _verify_reload(folder: Any, probe: Any, expected: Any, *, on_gpu: bool) -> None:
    """The saved folder reloads with transformers and gives the same logits as the in-memory model."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        folder, device_map="cuda" if on_gpu else None, trust_remote_code=False, local_files_only=True
    ).eval()
    with torch.inference_mode():
        logits = model(probe.to(model.device)).logits.float().cpu()
    if not torch.isfinite(logits).all() or not torch.allclose(logits, expected, atol=1e-2, rtol=1e-2):
        raise PassError("the saved int4 model does not reproduce the quantized model's logits after reloading")


def _as_transformers_patterns(ignore: list[str]) -> list[str]:
    """Our ``ignore`` entries (names or ``re:<regex>``) as transformers' regex/suffix patterns."""
    return [item[3:] if item.startswith("re:") else item for item in ignore]


def _estimate_dict(cost: CostModel, artifact: ModelArtifact, on_gpu: bool) -> dict[str, float | None]:
    estimate = estimate_resources(cost, read_model_shape(artifact.folder), tokens=0, on_gpu=on_gpu)
    return {"seconds": estimate.estimated_seconds, "memory_mb": estimate.estimated_memory_mb}
