"""Shared by the passes that edit PyTorch weights in place (pruning, 2:4 sparsity).

``load_editable(artifact)`` opens a ``torch`` image classifier or a Hugging Face
encoder as an ``EditableModel``: the module, its task data for fine-tuning (image
classifiers only) and ``save(folder)`` writing the same format back (safetensors,
never pickle). Formats and tasks are paired: ``torch`` ↔ image-classification,
``hf`` ↔ feature-extraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError

#: Format → the task a weight-editing pass supports for it.
EDITABLE_TASKS = {"torch": "image-classification", "hf": "feature-extraction"}


def check_editable(pass_name: str, artifact: ModelArtifact, *, finetune_steps: int = 0) -> None:
    """``PreflightError`` unless ``artifact`` is a float torch classifier or a float HF encoder.

    Fine-tuning needs labelled task data: only image classifiers have it here.
    """
    expected = EDITABLE_TASKS.get(artifact.format)
    if expected != artifact.task:
        raise PreflightError(
            f"{pass_name} edits torch image classifiers or Hugging Face encoders (feature-extraction); "
            f"'{artifact.name}' is a {artifact.format} {artifact.task} model"
        )
    if is_quantized(artifact):
        raise PreflightError(
            f"{pass_name} needs floating-point weights; '{artifact.name}' is already quantized — "
            "apply it before quantization"
        )
    if finetune_steps and artifact.format != "torch":
        raise PreflightError(
            f"{pass_name}: fine-tuning (finetune_steps={finetune_steps}) is available for image classifiers "
            "only — there are no task labels for a sentence encoder here; set finetune_steps: 0"
        )


def is_quantized(artifact: ModelArtifact) -> bool:
    """Whether an earlier pass stored ``artifact``'s weights quantized (its metadata says so)."""
    return bool(artifact.metadata.get("weights") or artifact.metadata.get("precision"))


@dataclass
class EditableModel:
    module: Any  # torch.nn.Module
    artifact: ModelArtifact
    config: dict[str, Any] | None = None  # torch format: config.json

    def save(self, folder: Path) -> None:
        """Write the (edited) module into ``folder`` in the artifact's own format."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.artifact.format == "torch":
            from optimizers.models import save_torch_module

            save_torch_module(self.module, dict(self.config or {}), folder)
            return
        from optimizers.passes.common import copy_companion_files

        copy_companion_files(self.artifact.folder, folder)
        self.module.save_pretrained(folder, safe_serialization=True)

    def train_data(self):
        """(images, labels) of the train split (image classifiers only)."""
        from optimizers.evaluation.images import digits_split

        return digits_split("train")

    def finetune(self, config: Any, ctx: Any, *, start: float, span: float) -> list[dict[str, float]]:
        """Fine-tune the (masked) module on the train split for ``config.finetune_steps`` steps.

        ``config`` carries ``finetune_steps``, ``learning_rate``, ``batch_size`` and ``seed``;
        progress goes from ``start`` to ``start + span`` as "step n of N, loss x". Returns the
        training curve (``[{"step", "loss"}]``); ``CancelledError`` when the caller asked to stop.
        """
        import torch

        from optimizers.models.training import TrainSettings, curve, train_classifier

        images, labels = self.train_data()

        def on_step(step: int, steps: int, loss: float) -> None:
            if step % 10 == 0 or step == steps:
                ctx.progress(start + span * step / steps, f"step {step} of {steps}, loss {loss:.3f}")

        torch.manual_seed(config.seed)
        settings = TrainSettings(
            steps=config.finetune_steps,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            seed=config.seed,
        )
        losses = train_classifier(self.module, images, labels, settings, on_step=on_step, should_stop=ctx.should_cancel)
        ctx.check_cancelled()
        self.module.eval()
        return curve(losses)


def load_editable(artifact: ModelArtifact) -> EditableModel:
    """Open ``artifact`` (``torch`` or ``hf``) as a float32 CPU module in eval mode."""
    if artifact.format == "torch":
        from optimizers.models import load_torch_module, read_torch_config

        return EditableModel(load_torch_module(artifact), artifact, read_torch_config(artifact))
    from transformers import AutoModel

    module = AutoModel.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True)
    return EditableModel(module.eval(), artifact)


def weight_layers(module, kinds: tuple[str, ...] | list[str]) -> list[tuple[str, Any]]:
    """(name, layer) of every ``nn.Linear`` (kind ``linear``) and ``nn.Conv2d`` (``conv``) in ``module``."""
    from torch import nn

    types = {"linear": nn.Linear, "conv": nn.Conv2d}
    wanted = tuple(types[kind] for kind in kinds)
    return [(name, layer) for name, layer in module.named_modules() if wanted and isinstance(layer, wanted)]


def zero_fraction(tensor) -> float:
    return float((tensor == 0).sum()) / max(tensor.numel(), 1)


def sparsity_report(module, layers: list[tuple[str, Any]]) -> dict[str, Any]:
    """Actual sparsity: over the edited weights, per layer, and over all parameters of the model."""
    zeros = sum(int((layer.weight == 0).sum()) for _, layer in layers)
    total = sum(layer.weight.numel() for _, layer in layers)
    all_zeros = sum(int((p == 0).sum()) for p in module.parameters())
    all_total = sum(p.numel() for p in module.parameters())
    return {
        "sparsity": round(zeros / max(total, 1), 6),
        "overall_sparsity": round(all_zeros / max(all_total, 1), 6),
        "pruned_parameters": total,
        "layers": [
            {"name": name, "sparsity": round(zero_fraction(layer.weight), 6), "parameters": layer.weight.numel()}
            for name, layer in layers
        ],
    }
