"""Evaluation for ``image-classification``: accuracy, and agreement / KL against the baseline.

Data: the held-out ``eval`` split of the built-in digits set
(``optimizers.evaluation.images``; disjoint by content hash from the train and
calibration splits). Every variant is run through ``load_runtime`` on exactly
the same normalised images. Metrics (bootstrap 95% CIs over images where noted):

- ``accuracy`` (with CI): share of images whose top-1 class is the label;
- ``top1_agreement`` (with CI): share of images where the variant predicts the
  baseline's class (the baseline agrees with itself: 1.0);
- ``kl_divergence``: mean KL(baseline ‖ candidate) of the softmax over classes,
  and ``kl_divergence_p99`` (99th percentile over images);
- ``eval_samples``: images evaluated.
"""

from __future__ import annotations

import numpy as np

from optimizers.evaluation.images import ImageSplit, load_image_split
from optimizers.evaluation.metrics import mean_with_ci


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def classification_metrics(logits: np.ndarray, labels: np.ndarray, baseline_logits: np.ndarray) -> dict[str, float]:
    """Accuracy, top-1 agreement and KL to the baseline (see module docstring)."""
    predictions = np.argmax(logits, axis=1)
    baseline_predictions = np.argmax(baseline_logits, axis=1)
    metrics = mean_with_ci("accuracy", (predictions == labels).astype(np.float64))
    metrics.update(mean_with_ci("top1_agreement", (predictions == baseline_predictions).astype(np.float64)))
    base_log, cand_log = log_softmax(baseline_logits), log_softmax(logits)
    kl = np.maximum((np.exp(base_log) * (base_log - cand_log)).sum(axis=1), 0.0)
    metrics["kl_divergence"] = float(np.mean(kl))
    metrics["kl_divergence_p99"] = float(np.percentile(kl, 99))
    metrics["eval_samples"] = float(len(labels))
    return metrics


def predict(runtime, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits of ``runtime`` on ``images``, in order (N, classes) float32."""
    chunks = [
        np.asarray(runtime.forward({"pixel_values": images[start : start + batch_size]}), dtype=np.float32)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(chunks, axis=0)


class ImageClassificationEvaluator:
    """Task evaluator: runs the baseline first and keeps its logits, then compares each variant."""

    task = "image-classification"

    def __init__(self, dataset_reference: str | None, max_samples: int, batch_size: int) -> None:
        self.dataset: ImageSplit = load_image_split(dataset_reference, "eval", max_samples)
        self.batch_size = batch_size
        self._baseline: np.ndarray | None = None

    def describe(self) -> str:
        return f"{self.dataset.name}: {len(self.dataset)} held-out images"

    def evaluate(self, artifact) -> dict[str, float]:
        """Metrics of ``artifact``; the first artifact evaluated is the baseline."""
        from optimizers.runtimes import load_runtime

        # Spinning off: several runtimes share this process during evaluation.
        runtime = load_runtime(artifact, allow_spinning=False)
        logits = predict(runtime, self.dataset.images, self.batch_size)
        if self._baseline is None:
            self._baseline = logits
        return classification_metrics(logits, self.dataset.labels, self._baseline)
