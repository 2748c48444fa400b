"""Task-independent metrics with bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two (N, D) arrays."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    return np.sum(l2_normalize(a.astype(np.float64)) * l2_normalize(b.astype(np.float64)), axis=-1)


def retrieval_hits(queries: np.ndarray, passages: np.ndarray, k: int = 1) -> np.ndarray:
    """1.0 where query i's k nearest passages (by cosine) include passage i, else 0.0."""
    scores = l2_normalize(queries.astype(np.float64)) @ l2_normalize(passages.astype(np.float64)).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.array([float(i in row) for i, row in enumerate(top)])


def bootstrap_ci(values: np.ndarray, *, samples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (deterministic seed)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(samples, values.size), replace=True).mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def mean_with_ci(name: str, values: np.ndarray) -> dict[str, float]:
    """``{name, name_ci_low, name_ci_high}`` for per-sample values."""
    low, high = bootstrap_ci(values)
    return {name: float(np.mean(values)), f"{name}_ci_low": low, f"{name}_ci_high": high}
