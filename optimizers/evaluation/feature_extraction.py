"""Evaluation for ``feature-extraction`` (sentence encoders).

Embeddings are mean-pooled over the attention mask and L2-normalised, as
sentence-transformers does for all-MiniLM-L6-v2. Metrics against the baseline:
``cosine`` (mean per-text cosine between candidate and baseline embeddings,
with ``cosine_min``) and ``recall_at_1`` (each query retrieves its own passage
among all held-out passages, using the candidate's own embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizers.evaluation.datasets import TextDataset
from optimizers.evaluation.metrics import l2_normalize, mean_with_ci, retrieval_hits, rowwise_cosine
from optimizers.runtimes import Runtime

MAX_LENGTH = 256


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Average token vectors where the mask is 1, then L2-normalise (N, H)."""
    mask = attention_mask[..., None].astype(hidden.dtype)
    summed = (hidden * mask).sum(axis=1)
    counts = np.maximum(mask.sum(axis=1), 1e-9)
    return l2_normalize(summed / counts)


def embed_texts(runtime: Runtime, tokenizer, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
    """Pooled embeddings of ``texts`` in order (N, H)."""
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="np",
        )
        inputs = {key: np.asarray(value, dtype=np.int64) for key, value in batch.items()}
        chunks.append(mean_pool(runtime.forward(inputs), inputs["attention_mask"]))
    return np.concatenate(chunks, axis=0)


@dataclass
class Embeddings:
    """Embeddings of a dataset's texts, and of its queries and passages."""

    texts: np.ndarray
    queries: np.ndarray | None
    passages: np.ndarray | None


def embed_dataset(runtime: Runtime, tokenizer, dataset: TextDataset, *, batch_size: int = 32) -> Embeddings:
    vectors = embed_texts(runtime, tokenizer, dataset.texts, batch_size=batch_size)
    if not dataset.pairs:
        return Embeddings(texts=vectors, queries=None, passages=None)
    # load_text_dataset puts queries then passages at the end of ``texts``.
    count = len(dataset.pairs)
    queries = vectors[len(vectors) - 2 * count : len(vectors) - count]
    passages = vectors[len(vectors) - count :]
    return Embeddings(texts=vectors, queries=queries, passages=passages)


def feature_extraction_metrics(candidate: Embeddings, baseline: Embeddings) -> dict[str, float]:
    """Cosine to the baseline and retrieval recall@1, with bootstrap 95% CIs."""
    cosines = rowwise_cosine(candidate.texts, baseline.texts)
    metrics = mean_with_ci("cosine", cosines)
    metrics["cosine_min"] = float(np.min(cosines))
    if candidate.queries is not None and candidate.passages is not None:
        metrics.update(mean_with_ci("recall_at_1", retrieval_hits(candidate.queries, candidate.passages, k=1)))
    metrics["eval_samples"] = float(len(cosines))
    return metrics


class FeatureExtractionEvaluator:
    """Task evaluator: embeds the held-out set once for the baseline, then compares each variant."""

    task = "feature-extraction"

    def __init__(self, dataset_reference: str | None, max_samples: int, batch_size: int) -> None:
        from optimizers.evaluation.datasets import load_text_dataset

        self.dataset = load_text_dataset(dataset_reference, split="eval", max_samples=max_samples)
        self.batch_size = batch_size
        self._tokenizer = None
        self._baseline: Embeddings | None = None

    def describe(self) -> str:
        return f"{self.dataset.name}: {len(self.dataset.texts)} texts, {len(self.dataset.pairs)} retrieval pairs"

    def evaluate(self, artifact) -> dict[str, float]:
        """Metrics of ``artifact``; the first artifact evaluated is the baseline."""
        from optimizers.runtimes import load_runtime, load_tokenizer

        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(artifact)
        # Spinning off: several runtimes share this process during evaluation.
        runtime = load_runtime(artifact, allow_spinning=False)
        embeddings = embed_dataset(runtime, self._tokenizer, self.dataset, batch_size=self.batch_size)
        if self._baseline is None:
            self._baseline = embeddings
        return feature_extraction_metrics(embeddings, self._baseline)
