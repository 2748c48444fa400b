"""``sparsity_2_4``: 2:4 semi-structured magnitude sparsity (two zeros in every group of four weights).

In every weight row, each group of 4 consecutive input weights keeps its 2
largest magnitudes. Linear layers qualify when their input width is a multiple
of 4; Conv2d layers when ``in_channels × kh × kw`` is (the im2col row length) —
others are skipped and listed. Optional fine-tuning (image classifiers) keeps
the masks applied. The output is a dense model of the same format with the
pattern in its weights (safetensors), which loads anywhere.

Speed: only GPUs with sparse tensor cores (compute capability ≥ 8.0) run 2:4
weights faster, through ``torch.sparse.to_sparse_semi_structured``. On such a
CUDA worker the pass converts each qualifying Linear, checks the sparse output
against the dense one and times both (fp16, reported in ``details["gpu"]``);
on a CPU worker it says that acceleration needs such a GPU.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError
from optimizers.passes import register
from optimizers.passes.base import SAME_AS_INPUT, Pass, PassConfig, PassContext, Preflight
from optimizers.passes.module_edit import check_editable, load_editable, sparsity_report, weight_layers

#: Sparse tensor cores (2:4) arrived with Ampere.
MIN_COMPUTE_CAPABILITY = (8, 0)


class Sparsity24Config(PassConfig):
    layer_types: list[Literal["linear", "conv"]] = Field(
        default_factory=lambda: ["linear", "conv"], min_length=1, description="Which layers get the 2:4 pattern."
    )
    finetune_steps: int = Field(
        0, ge=0, le=20_000, description="Fine-tuning steps on the train split with the masks applied (CNNs only)."
    )
    learning_rate: float = Field(1e-3, gt=0, le=1.0, description="Fine-tuning learning rate (AdamW).")
    batch_size: int = Field(64, ge=1, le=4096, description="Fine-tuning batch size.")
    seed: int = Field(0, description="Seed for the fine-tuning batch order.")
    gpu_batch: int = Field(
        2048, ge=64, le=65_536, description="Rows of the input used to time sparse vs dense Linear on a GPU."
    )


def mask_2_4(weight) -> Any:
    """Boolean mask keeping the 2 largest |w| in each group of 4 along the flattened input axis.

    ``weight`` is (out, …) with ``prod(…) % 4 == 0``; the mask has its shape.
    """
    import torch

    rows = weight.detach().reshape(weight.shape[0], -1)
    if rows.shape[1] % 4:
        raise ValueError(f"row length {rows.shape[1]} is not a multiple of 4")
    groups = rows.abs().reshape(rows.shape[0], -1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, groups.topk(2, dim=2).indices, True)
    return keep.reshape(weight.shape)


def follows_2_4(weight) -> bool:
    """True when every group of 4 consecutive weights in each row has at least 2 zeros."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    if rows.shape[1] % 4:
        return False
    return bool(((rows.reshape(rows.shape[0], -1, 4) != 0).sum(dim=2) <= 2).all())


@register
class Sparsity24(Pass):
    name = "sparsity_2_4"
    title = "2:4 semi-structured sparsity"
    description = (
        "Keep the 2 largest of every 4 weights (Linear, and Conv where the shape allows); on an Ampere+ GPU, "
        "convert to torch's semi-structured sparse tensors and time them against dense."
    )
    Config = Sparsity24Config
    input_formats = ("torch", "hf")
    tasks = ("image-classification", "feature-extraction")
    output_format = SAME_AS_INPUT

    def preflight(self, artifact: ModelArtifact, config: Sparsity24Config) -> Preflight:
        report = super().preflight(artifact, config)
        check_editable(self.name, artifact, finetune_steps=config.finetune_steps)
        report.estimated_seconds = 5.0 + 0.01 * config.finetune_steps
        if _sparse_gpu() is None:
            report.notes.append("no CUDA GPU with compute capability ≥ 8.0 here: masks only, no sparse speedup")
        return report

    def run(self, artifact: ModelArtifact, config: Sparsity24Config, ctx: PassContext) -> ModelArtifact:
        from torch.nn.utils import prune

        editable = load_editable(artifact)
        candidates = weight_layers(editable.module, config.layer_types)
        layers, skipped = [], []
        for name, layer in candidates:
            width = layer.weight[0].numel()
            if width % 4:
                skipped.append({"name": name, "reason": f"row length {width} is not a multiple of 4"})
            else:
                layers.append((name, layer))
        if not layers:
            raise PassError(f"no layer of {artifact.name} has rows whose length is a multiple of 4")
        ctx.progress(0.05, f"applying 2:4 masks to {len(layers)} layers ({len(skipped)} skipped)")
        for _, layer in layers:
            prune.custom_from_mask(layer, "weight", mask_2_4(layer.weight))
        details: dict[str, Any] = {}
        if config.finetune_steps:
            details["training_curve"] = editable.finetune(config, ctx, start=0.1, span=0.6)
        for _, layer in layers:
            prune.remove(layer, "weight")
        broken = [name for name, layer in layers if not follows_2_4(layer.weight)]
        if broken:  # cannot happen with the masks applied; checked because the GPU kernels rely on it
            raise PassError(f"2:4 pattern does not hold in {', '.join(broken)}")
        details.update(sparsity_report(editable.module, layers))
        details["skipped_layers"] = skipped
        gpu = _sparse_gpu()
        notes = []
        if gpu is None:
            notes.append(
                "acceleration needs a CUDA GPU with compute capability ≥ 8.0 (sparse tensor cores); "
                "this worker has none, so the output is the masked dense model and runs at dense speed here"
            )
        else:
            ctx.progress(0.8, f"timing semi-structured sparse vs dense Linear layers on {gpu}")
            details["gpu"] = _gpu_timings(layers, config.gpu_batch, gpu)
            notes.append(
                "the saved model keeps dense weights with the 2:4 pattern; convert Linear weights with "
                "torch.sparse.to_sparse_semi_structured at load time on an Ampere+ GPU to use the sparse kernels"
            )
        details["notes"] = notes
        editable.save(ctx.work_dir)
        return ModelArtifact.from_folder(
            ctx.work_dir,
            name=self.name,
            format=artifact.format,
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={"sparsity": details["sparsity"], "sparsity_pattern": "2:4", "details": details},
        )


def _sparse_gpu() -> str | None:
    """Name of this machine's CUDA GPU when it has 2:4 sparse tensor cores, else None."""
    import torch

    if not torch.cuda.is_available():
        return None
    if torch.cuda.get_device_capability() < MIN_COMPUTE_CAPABILITY:
        return None
    return torch.cuda.get_device_name()


def _time_cuda(function, repeats: int = 50) -> float:
    """Median milliseconds of ``function()`` over ``repeats`` CUDA-event-timed calls (after warm-up)."""
    import statistics

    import torch

    for _ in range(10):
        function()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return float(statistics.median(times))


def semi_structured_linear_check(weight, batch: int) -> dict[str, Any]:
    """Convert one 2:4 weight (out, in) to a semi-structured sparse tensor on CUDA (fp16) and time it.

    Returns dense and sparse median milliseconds for ``x @ W.T`` with ``batch``
    input rows, the speedup and the largest difference between the two outputs.
    Raises the library's error when the shape is not supported.
    """
    import torch
    from torch.sparse import to_sparse_semi_structured

    dense = weight.detach().to(device="cuda", dtype=torch.float16).contiguous()
    sparse = to_sparse_semi_structured(dense)
    inputs = torch.randn(batch, dense.shape[1], device="cuda", dtype=torch.float16)
    with torch.inference_mode():
        expected = torch.nn.functional.linear(inputs, dense)
        got = torch.nn.functional.linear(inputs, sparse)
        dense_ms = _time_cuda(lambda: torch.nn.functional.linear(inputs, dense))
        sparse_ms = _time_cuda(lambda: torch.nn.functional.linear(inputs, sparse))
    return {
        "dense_ms": round(dense_ms, 5),
        "sparse_ms": round(sparse_ms, 5),
        "speedup": round(dense_ms / sparse_ms, 3) if sparse_ms else None,
        "max_abs_diff": float((got.float() - expected.float()).abs().max()),
    }


def _gpu_timings(layers, batch: int, gpu: str) -> dict[str, Any]:
    from torch import nn

    results = []
    for name, layer in layers:
        if not isinstance(layer, nn.Linear):
            continue
        try:
            row = {"name": name, "shape": list(layer.weight.shape), **semi_structured_linear_check(layer.weight, batch)}
        except (RuntimeError, ValueError) as error:  # shapes the sparse kernels do not take
            row = {"name": name, "shape": list(layer.weight.shape), "error": str(error).splitlines()[0][:300]}
        results.append(row)
    return {"device": gpu, "dtype": "float16", "batch": batch, "layers": results}
