"""``prune_structured``: remove whole units, guided by a sensitivity analysis, into a smaller dense model.

Unit kinds (``units``) by model kind:

- **BERT encoders** (``hf``, ``feature-extraction``, ``model_type: bert``, e.g. ``zoo:minilm``):
  ``ffn_neurons`` (rows of ``intermediate.dense`` and the matching columns of
  ``output.dense``) and ``layers`` (whole ``encoder.layer[i]`` blocks).
  ``heads`` is refused: transformers 5.x removed head pruning (no ``prune_heads``,
  no ``config.pruned_heads``) and ``BertSelfAttention`` derives the head size from
  ``hidden_size / num_attention_heads``, so a BERT with fewer heads of the same
  size cannot be written as a folder ``AutoModel.from_pretrained`` loads.
- **CNNs** (``torch``, ``image-classification``, ``digits-cnn``): ``channels``
  (output filters of each convolution, with the matching inputs of the next
  convolution or the classifier).

Sensitivity analysis: every unit group is removed *alone* (by zeroing exactly
what removal takes away, which gives the same outputs as the smaller model) and
the metric drop is measured on the calibration split, never the eval split:

- encoders: ``1 − mean cosine`` of mean-pooled embeddings to the unpruned model;
- CNNs: accuracy drop; ties (common on a small calibration set) are broken by the
  mean KL divergence to the unpruned model's predictions, also recorded.

Then the least sensitive units are removed first up to ``target``:

- ``layers``: ``round(target × L)`` layers, ranked across the model;
- ``ffn_neurons`` and ``channels``: BERT's config has one ``intermediate_size`` for
  every layer, so FFN pruning is **uniform per layer**: every layer loses
  ``round(target × intermediate_size)`` neurons, chosen within that layer. Each
  layer's neurons are ranked by weight magnitude (‖w_in‖·‖w_out‖) and cut into
  ``groups_per_layer`` groups of that order; the groups are measured and the layer's
  least sensitive groups are removed first (the last one partly, lowest magnitude
  first, to hit the count exactly). CNN channels are pruned the same way per
  convolution (each keeps ``round((1 − target) × channels)``, at least one), so the
  architecture keeps its shape.

``target`` is therefore the fraction of the chosen kind's units removed, which is
also the fraction of the parameters those units own for ``layers`` and
``ffn_neurons`` (each unit owns the same count); ``details`` reports the exact
parameter counts. The output is written with the normal saver (``save_pretrained``
/ ``save_torch_module``), its config carries the new sizes, and it is reloaded
with the normal loader and checked against the pruned module before returning.

``metadata["details"]``: ``sensitivity`` (rows ``{"unit", "drop", "pruned", ...}``
sorted from least to most sensitive), ``parameters_before``, ``parameters_after``,
``parameters_prunable`` (owned by the chosen units before pruning),
``removed_fraction`` (of the units), ``metric``, ``calibration_drop`` (drop of the
pruned model), and the new sizes.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.passes import register
from optimizers.passes.base import SAME_AS_INPUT, Pass, PassConfig, PassContext, Preflight
from optimizers.passes.module_edit import is_quantized

UnitKind = Literal["heads", "ffn_neurons", "layers", "channels"]

#: Model kind → unit kinds this pass can remove from it.
ALLOWED_UNITS: dict[str, tuple[str, ...]] = {"BERT encoder": ("ffn_neurons", "layers"), "CNN": ("channels",)}

HEADS_UNSUPPORTED = (
    "heads cannot be pruned into a loadable BERT with transformers 5: head pruning was removed "
    "(no prune_heads, no config.pruned_heads) and BertSelfAttention derives the head size from "
    "hidden_size / num_attention_heads, so fewer heads cannot be expressed in config.json"
)


class PruneStructuredConfig(PassConfig):
    units: UnitKind = Field(
        "ffn_neurons",
        description="What to remove: ffn_neurons or layers (BERT encoders), channels (CNNs). "
        "heads is refused for BERT in transformers 5 (see the pass description).",
    )
    target: float = Field(
        0.5,
        description="Fraction of the chosen units to remove, strictly between 0 and 1 (uniform per layer "
        "for ffn_neurons and channels).",
    )
    groups_per_layer: int = Field(
        8, ge=1, le=64, description="ffn_neurons/channels: groups per layer measured in the sensitivity analysis."
    )
    calibration_samples: int | None = Field(
        None,
        ge=4,
        le=2000,
        description="Calibration texts (encoders, default 32) or images (CNNs, default the whole calibration split) "
        "measured in the sensitivity analysis.",
    )

    @field_validator("target")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(f"target must be strictly between 0 and 1 (the fraction of units removed), got {value}")
        return value


@register
class PruneStructured(Pass):
    name = "prune_structured"
    title = "Structured pruning (sensitivity-guided)"
    description = (
        "Measure how much each unit group (FFN neurons, layers, CNN channels) matters on calibration data, "
        "then remove the least sensitive up to the target: a genuinely smaller dense model. "
        "BERT attention heads cannot be removed in transformers 5."
    )
    Config = PruneStructuredConfig
    input_formats = ("hf", "torch")
    tasks = ("feature-extraction", "image-classification")
    output_format = SAME_AS_INPUT

    def preflight(self, artifact: ModelArtifact, config: PruneStructuredConfig) -> Preflight:
        report = super().preflight(artifact, config)
        if not 0.0 < config.target < 1.0:
            raise PreflightError(f"{self.name}: target must be strictly between 0 and 1, got {config.target}")
        kind = model_kind(artifact)
        allowed = ALLOWED_UNITS[kind]
        if config.units not in allowed:
            reason = f" ({HEADS_UNSUPPORTED})" if config.units == "heads" and kind == "BERT encoder" else ""
            raise PreflightError(
                f"{self.name}: '{artifact.name}' is a {kind}, which has no '{config.units}' units to remove{reason}; "
                f"allowed units for a {kind}: {', '.join(allowed)}"
            )
        if is_quantized(artifact):
            raise PreflightError(
                f"{self.name} needs floating-point weights; '{artifact.name}' is already quantized — prune first"
            )
        sizes = unit_counts(artifact, config.units)
        for layer, count in sizes.items():
            removed = units_to_remove(count, config.target)
            if removed < 1 or removed >= count:
                raise PreflightError(
                    f"{self.name}: target {config.target} removes {removed} of {count} {config.units} in {layer}; "
                    f"it must remove at least one and keep at least one"
                )
        groups = sum(min(config.groups_per_layer, count) for count in sizes.values())
        if config.units == "layers":
            groups = next(iter(sizes.values()))
        report.estimated_seconds = 5.0 + (0.3 if kind == "BERT encoder" else 0.01) * groups
        report.notes.append(f"sensitivity analysis over {groups} unit groups on the calibration split")
        return report

    def run(self, artifact: ModelArtifact, config: PruneStructuredConfig, ctx: PassContext) -> ModelArtifact:
        import torch

        kind = model_kind(artifact)
        pruner: _Pruner = _BertPruner(artifact, config) if kind == "BERT encoder" else _CnnPruner(artifact, config)
        before = _parameter_count(pruner.model)
        with torch.no_grad():
            groups = pruner.groups()
            ctx.log(f"sensitivity analysis: {len(groups)} {config.units} groups on {pruner.metric_name}")
            for number, group in enumerate(groups, start=1):
                ctx.check_cancelled()
                group.drop, group.tiebreak = pruner.drop_without(group)
                ctx.progress(
                    0.05 + 0.8 * number / len(groups),
                    f"sensitivity {number} of {len(groups)}: {group.label} drop {group.drop:.4f}",
                )
            removed = pruner.choose(groups)
            ctx.progress(0.9, f"removing {sum(len(v) for v in removed.values())} {config.units}")
            prunable = pruner.prunable_parameters()
            pruned_model, new_sizes = pruner.apply(removed)
            after = _parameter_count(pruned_model)
            final_drop, _ = pruner.drop_of(pruned_model)
        out = ctx.work_dir
        staging = out.with_name(f".{out.name}.partial")
        if staging.exists():
            shutil.rmtree(staging)
        try:
            pruner.save(pruned_model, new_sizes, staging)
            pruner.verify_reload(pruned_model, staging)
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        table = sorted(groups, key=lambda g: (g.drop, g.tiebreak, g.order))
        details: dict[str, Any] = {
            "units": config.units,
            "target": config.target,
            "metric": pruner.metric_name,
            "sensitivity": [group.row() for group in table],
            "parameters_before": before,
            "parameters_after": after,
            "parameters_prunable": prunable,
            "removed_fraction": round(pruner.removed_fraction(removed), 6),
            "calibration_drop": round(float(final_drop), 6),
            "calibration_samples": pruner.samples,
            "new_sizes": new_sizes,
        }
        if kind == "BERT encoder" and config.units == "ffn_neurons":
            details["notes"] = ["BERT has one intermediate_size: every layer loses the same number of FFN neurons"]
        ctx.log(
            f"parameters {before:,} → {after:,} ({1 - after / before:.1%} fewer); "
            f"calibration {pruner.metric_name} of the pruned model {final_drop:.4f}"
        )
        return ModelArtifact.from_folder(
            out,
            name=self.name,
            format=artifact.format,
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={"details": details},
        )


# --------------------------------------------------------------------------- model kinds


def model_kind(artifact: ModelArtifact) -> str:
    """``"BERT encoder"`` or ``"CNN"``; ``PreflightError`` for anything else."""
    config = _read_config(artifact.folder)
    if artifact.format == "hf" and artifact.task == "feature-extraction" and config.get("model_type") == "bert":
        return "BERT encoder"
    if artifact.format == "torch" and artifact.task == "image-classification":
        if config.get("inferopt_architecture") == "digits-cnn":
            return "CNN"
    described = config.get("model_type") or config.get("inferopt_architecture") or "unknown"
    raise PreflightError(
        f"prune_structured knows BERT encoders (hf feature-extraction, model_type bert: units "
        f"{', '.join(ALLOWED_UNITS['BERT encoder'])}) and the digits CNN (torch image-classification: units "
        f"{', '.join(ALLOWED_UNITS['CNN'])}); '{artifact.name}' is a {artifact.format} {artifact.task} model "
        f"of type {described}"
    )


def unit_counts(artifact: ModelArtifact, units: str) -> dict[str, int]:
    """Units per place they are removed from: ``{"model": L}`` for layers, else per layer."""
    config = _read_config(artifact.folder)
    if units == "layers":
        return {"the model": int(config["num_hidden_layers"])}
    if units == "ffn_neurons":
        return {f"layer {i}": int(config["intermediate_size"]) for i in range(int(config["num_hidden_layers"]))}
    return {f"conv {i}": int(count) for i, count in enumerate(config["channels"])}


def units_to_remove(count: int, target: float) -> int:
    """How many of ``count`` units a ``target`` fraction removes (half up, so 0.5 of 3 removes 2)."""
    return int(math.floor(target * count + 0.5))


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise PreflightError(f"{folder}: no readable config.json ({error})") from None
    return config if isinstance(config, dict) else {}


def _parameter_count(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


# --------------------------------------------------------------------------- unit groups


@dataclass
class UnitGroup:
    """Units measured together: ``indices`` of ``layer`` (all of it for ``layers``)."""

    label: str
    layer: int
    indices: list[int]
    order: int
    drop: float = 0.0
    tiebreak: float = 0.0
    pruned_units: int = 0

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "unit": self.label,
            "drop": round(float(self.drop), 6),
            "pruned": self.pruned_units > 0,
            "layer": self.layer,
            "size": len(self.indices),
            "pruned_units": self.pruned_units,
        }
        if self.tiebreak:
            row["kl"] = round(float(self.tiebreak), 6)
        return row


def _magnitude_groups(scores, groups_per_layer: int, layer: int, name: str, start_order: int) -> list[UnitGroup]:
    """Units of one layer ranked by ascending ``scores`` and cut into (at most) ``groups_per_layer`` groups."""
    ranked = [int(i) for i in np.argsort(np.asarray(scores), kind="stable")]
    parts = np.array_split(np.asarray(ranked), min(groups_per_layer, len(ranked)))
    groups = []
    for number, part in enumerate(parts):
        indices = [int(i) for i in part]
        groups.append(UnitGroup(f"layer {layer} {name} group {number}", layer, indices, start_order + number))
    return groups


def _choose_per_layer(groups: list[UnitGroup], counts: dict[int, int], target: float) -> dict[int, list[int]]:
    """Per layer, remove ``round(target × count)`` units, least sensitive groups first (the last one partly)."""
    removed: dict[int, list[int]] = {}
    for layer, count in counts.items():
        wanted = units_to_remove(count, target)
        chosen: list[int] = []
        for group in sorted((g for g in groups if g.layer == layer), key=lambda g: (g.drop, g.tiebreak, g.order)):
            if len(chosen) >= wanted:
                break
            # Group indices are in ascending magnitude, so a partial group loses its smallest units.
            take = group.indices[: wanted - len(chosen)]
            group.pruned_units = len(take)
            chosen.extend(take)
        removed[layer] = sorted(chosen)
    return removed


class _Pruner:
    model: Any
    metric_name: str
    samples: int

    def groups(self) -> list[UnitGroup]: ...
    def drop_without(self, group: UnitGroup) -> tuple[float, float]: ...
    def drop_of(self, model) -> tuple[float, float]: ...
    def choose(self, groups: list[UnitGroup]) -> dict[int, list[int]]: ...
    def prunable_parameters(self) -> int: ...
    def removed_fraction(self, removed: dict[int, list[int]]) -> float: ...
    def apply(self, removed: dict[int, list[int]]) -> tuple[Any, dict[str, Any]]: ...
    def save(self, model, new_sizes: dict[str, Any], folder: Path) -> None: ...
    def verify_reload(self, model, folder: Path) -> None: ...


def _select_linear(layer, keep: list[int], dim: int):
    """A copy of ``layer`` keeping only ``keep`` along ``dim`` (0: outputs, 1: inputs)."""
    import torch
    from torch import nn

    index = torch.tensor(keep, dtype=torch.long)
    weight = layer.weight.detach().index_select(dim, index).clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.bias is not None)
    new.weight = nn.Parameter(weight)
    if layer.bias is not None:
        bias = layer.bias.detach()
        new.bias = nn.Parameter((bias.index_select(0, index) if dim == 0 else bias).clone())
    return new


class _BertPruner(_Pruner):
    """FFN neurons or layers of a ``BertModel``; drop = 1 − mean pooled cosine to the unpruned model."""

    metric_name = "1 - pooled cosine to the unpruned model"

    def __init__(self, artifact: ModelArtifact, config: PruneStructuredConfig) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from optimizers.evaluation.datasets import pydoc_retrieval

        self.artifact = artifact
        self.config = config
        self.model = AutoModel.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True)
        # Calibration split only: the eval split stays held out for the pipeline's evaluation.
        texts = pydoc_retrieval("calibration").texts[: config.calibration_samples or 32]
        self.samples = len(texts)
        self.batch = dict(tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt"))
        with torch.no_grad():
            self.reference = self._embed(self.model)

    def _embed(self, model):
        import torch

        hidden = model(**self.batch).last_hidden_state
        mask = self.batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def drop_of(self, model) -> tuple[float, float]:
        cosine = (self._embed(model) * self.reference).sum(-1).mean()
        return max(0.0, 1.0 - float(cosine)), 0.0

    def groups(self) -> list[UnitGroup]:
        layers = self.model.encoder.layer
        if self.config.units == "layers":
            return [UnitGroup(f"layer {i}", i, [i], i) for i in range(len(layers))]
        groups: list[UnitGroup] = []
        for i, layer in enumerate(layers):
            scores = layer.intermediate.dense.weight.norm(dim=1) * layer.output.dense.weight.norm(dim=0)
            groups += _magnitude_groups(scores.numpy(), self.config.groups_per_layer, i, "ffn", len(groups))
        return groups

    def drop_without(self, group: UnitGroup) -> tuple[float, float]:
        from torch import nn

        encoder = self.model.encoder
        if self.config.units == "layers":
            kept = encoder.layer
            encoder.layer = nn.ModuleList([layer for i, layer in enumerate(kept) if i != group.layer])
            try:
                return self.drop_of(self.model)
            finally:
                encoder.layer = kept
        # A neuron whose output column is zero contributes nothing: the same outputs as removing it.
        weight = encoder.layer[group.layer].output.dense.weight
        saved = weight[:, group.indices].clone()
        weight[:, group.indices] = 0.0
        try:
            return self.drop_of(self.model)
        finally:
            weight[:, group.indices] = saved

    def choose(self, groups: list[UnitGroup]) -> dict[int, list[int]]:
        if self.config.units == "layers":
            wanted = units_to_remove(len(groups), self.config.target)
            chosen = sorted(groups, key=lambda g: (g.drop, g.order))[:wanted]
            for group in chosen:
                group.pruned_units = 1
            return {0: sorted(g.layer for g in chosen)}
        counts = {i: int(self.model.config.intermediate_size) for i in range(len(self.model.encoder.layer))}
        return _choose_per_layer(groups, counts, self.config.target)

    def _layer_parameters(self) -> int:
        return _parameter_count(self.model.encoder.layer[0])

    def prunable_parameters(self) -> int:
        layers = self.model.encoder.layer
        if self.config.units == "layers":
            return sum(_parameter_count(layer) for layer in layers)
        # Each neuron owns a row + bias of intermediate.dense and a column of output.dense.
        return sum(
            layer.intermediate.dense.weight.numel()
            + layer.intermediate.dense.bias.numel()
            + layer.output.dense.weight.numel()
            for layer in layers
        )

    def removed_fraction(self, removed: dict[int, list[int]]) -> float:
        if self.config.units == "layers":
            return len(removed[0]) / len(self.model.encoder.layer)
        total = int(self.model.config.intermediate_size) * len(self.model.encoder.layer)
        return sum(len(v) for v in removed.values()) / total

    def apply(self, removed: dict[int, list[int]]) -> tuple[Any, dict[str, Any]]:
        import copy

        from torch import nn

        model = copy.deepcopy(self.model)
        config = model.config
        if self.config.units == "layers":
            kept = [layer for i, layer in enumerate(model.encoder.layer) if i not in set(removed[0])]
            model.encoder.layer = nn.ModuleList(kept)
            for index, layer in enumerate(kept):
                # layer_idx addresses the KV cache in decoder use; keep it consistent with the new order.
                for module in layer.modules():
                    if hasattr(module, "layer_idx"):
                        module.layer_idx = index
            config.num_hidden_layers = len(kept)
            return model, {"num_hidden_layers": len(kept), "removed_layers": removed[0]}
        size = int(config.intermediate_size)
        for i, layer in enumerate(model.encoder.layer):
            keep = [j for j in range(size) if j not in set(removed[i])]
            layer.intermediate.dense = _select_linear(layer.intermediate.dense, keep, dim=0)
            layer.output.dense = _select_linear(layer.output.dense, keep, dim=1)
        config.intermediate_size = size - len(removed[0])
        return model, {"intermediate_size": int(config.intermediate_size)}

    def save(self, model, new_sizes: dict[str, Any], folder: Path) -> None:
        from optimizers.passes.common import copy_companion_files

        copy_companion_files(self.artifact.folder, folder)
        model.save_pretrained(folder, safe_serialization=True)  # rewrites config.json with the new sizes

    def verify_reload(self, model, folder: Path) -> None:
        import torch
        from transformers import AutoModel

        reloaded = AutoModel.from_pretrained(folder, trust_remote_code=False, local_files_only=True).eval()
        with torch.no_grad():
            difference = float((self._embed(reloaded) - self._embed(model)).abs().max())
        if difference > 1e-4:
            raise PassError(f"the saved pruned model differs from the pruned module after reload ({difference:.2e})")


class _CnnPruner(_Pruner):
    """Output channels of each convolution of a digits CNN; drop = accuracy drop on the calibration split."""

    metric_name = "accuracy drop on the calibration split"

    def __init__(self, artifact: ModelArtifact, config: PruneStructuredConfig) -> None:
        import torch

        from optimizers.evaluation.images import digits_split
        from optimizers.models import load_torch_module, read_torch_config

        self.artifact = artifact
        self.config = config
        self.model_config = read_torch_config(artifact)
        self.model = load_torch_module(artifact)
        images, labels = digits_split("calibration")
        limit = config.calibration_samples  # None: the whole split (a few hundred images, milliseconds each)
        self.images = torch.from_numpy(np.ascontiguousarray(images[:limit], dtype=np.float32))
        self.labels = torch.from_numpy(np.ascontiguousarray(labels[:limit]))
        self.samples = len(self.labels)
        with torch.no_grad():
            logits = self.model(self.images)
        self.reference_log_probs = torch.log_softmax(logits, dim=-1)
        self.reference_accuracy = float((logits.argmax(-1) == self.labels).float().mean())

    def _convs(self, model) -> list[Any]:
        from torch import nn

        return [m for m in model.features if isinstance(m, nn.Conv2d)]

    def drop_of(self, model) -> tuple[float, float]:
        import torch

        logits = model(self.images)
        accuracy = float((logits.argmax(-1) == self.labels).float().mean())
        log_probs = torch.log_softmax(logits, dim=-1)
        kl = float((self.reference_log_probs.exp() * (self.reference_log_probs - log_probs)).sum(-1).mean())
        return self.reference_accuracy - accuracy, max(kl, 0.0)

    def groups(self) -> list[UnitGroup]:
        groups: list[UnitGroup] = []
        for i, conv in enumerate(self._convs(self.model)):
            scores = conv.weight.abs().sum(dim=(1, 2, 3))
            groups += _magnitude_groups(scores.numpy(), self.config.groups_per_layer, i, "channels", len(groups))
        for group in groups:
            group.label = group.label.replace("layer", "conv", 1)
        return groups

    def drop_without(self, group: UnitGroup) -> tuple[float, float]:
        # ReLU(0) = 0: a filter with zero weights and bias outputs exactly what removing it leaves.
        conv = self._convs(self.model)[group.layer]
        saved_weight = conv.weight[group.indices].clone()
        saved_bias = conv.bias[group.indices].clone()
        conv.weight[group.indices] = 0.0
        conv.bias[group.indices] = 0.0
        try:
            return self.drop_of(self.model)
        finally:
            conv.weight[group.indices] = saved_weight
            conv.bias[group.indices] = saved_bias

    def choose(self, groups: list[UnitGroup]) -> dict[int, list[int]]:
        counts = {i: int(c) for i, c in enumerate(self.model_config["channels"])}
        return _choose_per_layer(groups, counts, self.config.target)

    def prunable_parameters(self) -> int:
        # All convolutions plus the classifier's first Linear (its inputs are channels too).
        return sum(_parameter_count(conv) for conv in self._convs(self.model)) + _parameter_count(
            self.model.classifier[1]
        )

    def removed_fraction(self, removed: dict[int, list[int]]) -> float:
        total = sum(int(c) for c in self.model_config["channels"])
        return sum(len(v) for v in removed.values()) / total

    def apply(self, removed: dict[int, list[int]]) -> tuple[Any, dict[str, Any]]:
        import torch

        from optimizers.models import build_torch_module

        channels = [int(c) for c in self.model_config["channels"]]
        keeps = [[j for j in range(count) if j not in set(removed[i])] for i, count in enumerate(channels)]
        new_config = dict(self.model_config)
        new_config["channels"] = [len(keep) for keep in keeps]
        model = build_torch_module(new_config).eval()
        old_convs, new_convs = self._convs(self.model), self._convs(model)
        previous = torch.arange(old_convs[0].weight.shape[1])
        for old, new, keep in zip(old_convs, new_convs, keeps, strict=True):
            index = torch.tensor(keep, dtype=torch.long)
            new.weight.copy_(old.weight.index_select(0, index).index_select(1, previous))
            new.bias.copy_(old.bias.index_select(0, index))
            previous = index
        # The classifier flattens (C, H', W') channel-major: keep each kept channel's block of positions.
        old_linear, new_linear = self.model.classifier[1], model.classifier[1]
        positions = old_linear.weight.shape[1] // channels[-1]
        columns = torch.tensor([c * positions + p for c in keeps[-1] for p in range(positions)], dtype=torch.long)
        new_linear.weight.copy_(old_linear.weight.index_select(1, columns))
        new_linear.bias.copy_(old_linear.bias)
        model.classifier[3].load_state_dict(self.model.classifier[3].state_dict())
        self.new_config = new_config
        return model, {"channels": new_config["channels"]}

    def save(self, model, new_sizes: dict[str, Any], folder: Path) -> None:
        from optimizers.models import save_torch_module

        save_torch_module(model, self.new_config, folder)

    def verify_reload(self, model, folder: Path) -> None:
        import torch

        from optimizers.models import load_torch_module

        reloaded = load_torch_module(folder)
        with torch.no_grad():
            difference = float((reloaded(self.images) - model(self.images)).abs().max())
        if difference > 1e-4:
            raise PassError(f"the saved pruned model differs from the pruned module after reload ({difference:.2e})")
