"""``prune_unstructured``: magnitude pruning of individual weights with ``torch.nn.utils.prune``.

The smallest-magnitude weights of the Linear (and, for CNNs, Conv2d) layers are
set to zero, either ranked across all those layers together (``global``) or
layer by layer to the same fraction (``per_layer``). Optional fine-tuning on the
task's train split (image classifiers; the masks stay applied while training)
recovers accuracy; then the masks are made permanent (``prune.remove``), so the
output is an ordinary dense model of the same format with zeros in it.

Dense hardware gets no speedup from this: the zeros are still stored and
multiplied. It is a step toward sparse kernels, 2:4 sparsity or compression.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from optimizers.artifacts import ModelArtifact
from optimizers.passes import register
from optimizers.passes.base import SAME_AS_INPUT, Pass, PassConfig, PassContext, Preflight
from optimizers.passes.module_edit import check_editable, load_editable, sparsity_report, weight_layers

NO_SPEEDUP_NOTE = (
    "dense hardware gets no speedup from unstructured sparsity: the zeros are still stored and multiplied; "
    "speed needs structured pruning, 2:4 sparsity on a GPU with sparse tensor cores, or a sparse kernel"
)


class PruneUnstructuredConfig(PassConfig):
    sparsity: float = Field(0.5, description="Fraction of the selected weights set to zero, strictly between 0 and 1.")
    scope: Literal["global", "per_layer"] = Field(
        "global", description="Rank weights across all selected layers together, or prune each layer alike."
    )
    layer_types: list[Literal["linear", "conv"]] = Field(
        default_factory=lambda: ["linear", "conv"], min_length=1, description="Which layers to prune."
    )
    finetune_steps: int = Field(
        0, ge=0, le=20_000, description="Fine-tuning steps on the train split with the masks applied (CNNs only)."
    )
    learning_rate: float = Field(1e-3, gt=0, le=1.0, description="Fine-tuning learning rate (AdamW).")
    batch_size: int = Field(64, ge=1, le=4096, description="Fine-tuning batch size.")
    seed: int = Field(0, description="Seed for the fine-tuning batch order.")

    @field_validator("sparsity")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"target sparsity must be strictly between 0 and 1 (the fraction of weights set to zero), got {value}"
            )
        return value


@register
class PruneUnstructured(Pass):
    name = "prune_unstructured"
    title = "Unstructured magnitude pruning"
    description = (
        "Zero the smallest-magnitude weights (global or per layer) with torch.nn.utils.prune, optionally fine-tune, "
        "and make the masks permanent. Reports the actual sparsity; no speedup on dense hardware."
    )
    Config = PruneUnstructuredConfig
    input_formats = ("torch", "hf")
    tasks = ("image-classification", "feature-extraction")
    output_format = SAME_AS_INPUT

    def preflight(self, artifact: ModelArtifact, config: PruneUnstructuredConfig) -> Preflight:
        report = super().preflight(artifact, config)
        check_editable(self.name, artifact, finetune_steps=config.finetune_steps)
        report.estimated_seconds = 5.0 + 0.01 * config.finetune_steps
        return report

    def run(self, artifact: ModelArtifact, config: PruneUnstructuredConfig, ctx: PassContext) -> ModelArtifact:
        from torch.nn.utils import prune

        editable = load_editable(artifact)
        layers = weight_layers(editable.module, config.layer_types)
        if not layers:
            from optimizers.errors import PassError

            raise PassError(f"{artifact.name} has no {' or '.join(config.layer_types)} layers to prune")
        ctx.progress(0.05, f"pruning {len(layers)} layers to {config.sparsity:.0%} ({config.scope})")
        if config.scope == "global":
            prune.global_unstructured(
                [(layer, "weight") for _, layer in layers], pruning_method=prune.L1Unstructured, amount=config.sparsity
            )
        else:
            for _, layer in layers:
                prune.l1_unstructured(layer, "weight", amount=config.sparsity)
        details: dict = {}
        if config.finetune_steps:
            details["training_curve"] = editable.finetune(config, ctx, start=0.1, span=0.8)
        for _, layer in layers:
            prune.remove(layer, "weight")  # weight = weight_orig * mask, as a plain parameter again
        measured = sparsity_report(editable.module, layers)
        ctx.log(f"actual sparsity {measured['sparsity']:.3f} of {measured['pruned_parameters']} pruned weights")
        out = ctx.work_dir
        editable.save(out)
        details.update(measured)
        details["target_sparsity"] = config.sparsity
        details["scope"] = config.scope
        notes = [NO_SPEEDUP_NOTE]
        if artifact.format == "hf":
            notes.append("no fine-tuning for sentence encoders here: quality is what pruning alone leaves")
        details["notes"] = notes
        return ModelArtifact.from_folder(
            out,
            name=self.name,
            format=artifact.format,
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={"sparsity": measured["sparsity"], "details": details},
        )
