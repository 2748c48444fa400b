"""Evaluation for ``causal-lm``: perplexity, KL divergence and top-1 agreement against the baseline.

Text: the held-out ``eval`` split of the tiny-LM corpus (``zoo:tiny-lm-eval``,
disjoint by content hash from the train and calibration splits), or an uploaded
JSONL file of ``{"text": ...}`` rows. Documents are tokenized once with the
*baseline's* Hugging Face tokenizer into one stream (BOS + document + EOS each)
and cut into sliding windows of a fixed context (``window`` tokens, advancing
by ``stride``): every token is scored exactly once, with at least
``window - stride`` tokens of context except in the first window.

Every variant sees exactly the same token ids: a ``gguf`` variant is run by
llama.cpp (``Llama(logits_all=True)``, ids fed with ``eval``), never re-loaded
into PyTorch. Metrics (bootstrap 95% CIs over windows):

- ``perplexity``: exp(mean next-token negative log-likelihood);
- ``kl_divergence`` (mean) and ``kl_divergence_p99`` (99th percentile over
  tokens): KL(baseline ‖ candidate) of the next-token distributions;
- ``top1_agreement``: share of positions where both pick the same next token;
- ``eval_samples`` (windows) and ``eval_tokens`` (scored tokens).

``last_generations`` holds, after each ``evaluate``, the greedy continuation of
a few fixed prompts (``GENERATION_PROMPTS``), for side-by-side display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimizers.errors import RecipeError
from optimizers.evaluation.metrics import bootstrap_ci

BUILTIN_LM_EVAL = "zoo:tiny-lm-eval"
DEFAULT_WINDOW = 256
DEFAULT_STRIDE = 128
#: At most this many windows are scored (the baseline's log-probabilities are
#: kept in memory: windows × stride × vocabulary × 4 bytes).
MAX_WINDOWS = 128
GENERATION_PROMPTS = (
    "The for statement is used to",
    "A dictionary maps",
    "Return the number of",
    "Exceptions are raised when",
)
GENERATION_TOKENS = 32


def load_lm_texts(
    reference: str | None, *, split: str = "eval", max_samples: int | None = None
) -> tuple[str, list[str]]:
    """(name, documents) for a recipe's ``dataset`` (``None`` → the tiny-LM corpus split).

    A JSONL file gives its ``text`` rows (``query``/``passage`` rows count as texts too).
    """
    if reference is None or reference == BUILTIN_LM_EVAL:
        from optimizers.zoo.tiny_lm import corpus_splits

        return f"{BUILTIN_LM_EVAL.removesuffix('-eval')}-{split}", corpus_splits()[split]
    if reference.startswith("zoo:"):
        raise RecipeError(f"unknown text dataset '{reference}' for causal-lm; available: {BUILTIN_LM_EVAL}")
    from optimizers.evaluation.datasets import load_jsonl

    dataset = load_jsonl(Path(reference), max_samples=None)
    texts = [text for text in dataset.texts if text.strip()]
    if not texts:
        raise RecipeError(f"dataset {dataset.name} has no text")
    return dataset.name, texts


@dataclass(frozen=True)
class Window:
    """Token ids of one window and the positions whose next-token prediction is scored."""

    ids: list[int]
    first_scored: int  # logits[j] for j in [first_scored, len(ids) - 1) predict ids[j + 1]

    @property
    def targets(self) -> np.ndarray:
        return np.asarray(self.ids[self.first_scored + 1 :], dtype=np.int64)


def sliding_windows(stream: list[int], *, window: int, stride: int, max_windows: int | None = None) -> list[Window]:
    """Cut ``stream`` into windows scoring each token once (see the module docstring)."""
    if stride < 1 or stride > window - 1:
        raise ValueError(f"stride must be between 1 and window - 1 ({window - 1}), got {stride}")
    if len(stream) < 2:
        return []
    windows = [Window(stream[:window], 0)]
    start = stride
    while start + window <= len(stream) and (max_windows is None or len(windows) < max_windows):
        windows.append(Window(stream[start : start + window], window - stride - 1))
        start += stride
    return windows[:max_windows] if max_windows else windows


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32)


def window_log_probs(runtime, window: Window) -> np.ndarray:
    """Log-probabilities (scored positions × vocab) of ``runtime`` on one window."""
    logits = runtime.logits(window.ids)
    return log_softmax(logits[window.first_scored : len(window.ids) - 1])


@dataclass
class TokenScores:
    """Per-token values of one variant and the window each token belongs to."""

    nll: np.ndarray
    kl: np.ndarray
    agree: np.ndarray
    window_of: np.ndarray


def compare_window(candidate: np.ndarray, baseline: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, ...]:
    """(nll, KL(baseline ‖ candidate), top-1 agreement) per scored position of one window."""
    nll = -candidate[np.arange(len(targets)), targets].astype(np.float64)
    base = baseline.astype(np.float64)
    kl = np.sum(np.exp(base) * (base - candidate.astype(np.float64)), axis=-1)
    agree = (np.argmax(candidate, axis=-1) == np.argmax(baseline, axis=-1)).astype(np.float64)
    return nll, np.maximum(kl, 0.0), agree


def _per_window_mean(values: np.ndarray, window_of: np.ndarray) -> np.ndarray:
    counts = np.bincount(window_of)
    return np.bincount(window_of, weights=values)[counts > 0] / counts[counts > 0]


def lm_metrics(scores: TokenScores) -> dict[str, float]:
    """Metrics (see the module docstring) from per-token scores, CIs by bootstrap over windows."""
    nll_windows = _per_window_mean(scores.nll, scores.window_of)
    low, high = bootstrap_ci(nll_windows)
    metrics = {
        "perplexity": math.exp(float(np.mean(scores.nll))),
        "perplexity_ci_low": math.exp(low),
        "perplexity_ci_high": math.exp(high),
    }
    for name, values in (("kl_divergence", scores.kl), ("top1_agreement", scores.agree)):
        low, high = bootstrap_ci(_per_window_mean(values, scores.window_of))
        metrics.update({name: float(np.mean(values)), f"{name}_ci_low": low, f"{name}_ci_high": high})
    metrics["kl_divergence_p99"] = float(np.percentile(scores.kl, 99))
    metrics["eval_samples"] = float(len(nll_windows))
    metrics["eval_tokens"] = float(len(scores.nll))
    return metrics


class CausalLMEvaluator:
    """Task evaluator: baseline log-probabilities computed once, each variant compared with them.

    The first artifact evaluated is the baseline; its tokenizer tokenizes everything.
    """

    task = "causal-lm"

    def __init__(
        self,
        dataset_reference: str | None,
        max_samples: int,
        batch_size: int = 1,
        *,
        window: int = DEFAULT_WINDOW,
        stride: int = DEFAULT_STRIDE,
        generation_tokens: int = GENERATION_TOKENS,
    ) -> None:
        self.dataset_name, self.texts = load_lm_texts(dataset_reference)
        self.max_windows = max(1, min(max_samples, MAX_WINDOWS))
        self.window, self.stride = window, stride
        self.generation_tokens = generation_tokens
        self.windows: list[Window] = []
        self.last_generations: dict[str, str] = {}
        self._tokenizer = None
        self._baseline: list[np.ndarray] | None = None

    def describe(self) -> str:
        detail = f"{len(self.windows)} windows" if self.windows else f"up to {self.max_windows} windows"
        return (
            f"{self.dataset_name}: {len(self.texts)} documents, {detail} of {self.window} tokens (stride {self.stride})"
        )

    def _prepare(self, artifact) -> None:
        from optimizers.runtimes import load_tokenizer
        from optimizers.zoo.tiny_lm import encode_documents

        self._tokenizer = load_tokenizer(artifact)
        context = _context_of(artifact)
        self.window = min(self.window, context)
        self.stride = min(self.stride, self.window - 1)
        stream = encode_documents(self._tokenizer, self.texts)
        self.windows = sliding_windows(stream, window=self.window, stride=self.stride, max_windows=self.max_windows)
        if not self.windows or len(stream) < self.window // 2:
            raise RecipeError(
                f"evaluation text {self.dataset_name} is too short: {len(stream)} tokens, "
                f"at least {self.window // 2} needed"
            )

    def evaluate(self, artifact) -> dict[str, float]:
        """Metrics of ``artifact``; also sets ``last_generations``."""
        from optimizers.runtimes.causal import load_causal_runtime

        if self._tokenizer is None:
            self._prepare(artifact)
        runtime = load_causal_runtime(artifact, context=max(self.window, 64 + self.generation_tokens))
        try:
            log_probs = [window_log_probs(runtime, window) for window in self.windows]
            if self._baseline is None:
                self._baseline = log_probs
            parts = [
                compare_window(candidate, baseline, window.targets)
                for candidate, baseline, window in zip(log_probs, self._baseline, self.windows, strict=True)
            ]
            scores = TokenScores(
                nll=np.concatenate([part[0] for part in parts]),
                kl=np.concatenate([part[1] for part in parts]),
                agree=np.concatenate([part[2] for part in parts]),
                window_of=np.concatenate([np.full(len(part[0]), index) for index, part in enumerate(parts)]),
            )
            self.last_generations = self.generate(runtime)
        finally:
            close = getattr(runtime, "close", None)
            if close:
                close()
        return lm_metrics(scores)

    def generate(self, runtime) -> dict[str, str]:
        """Greedy continuations of ``GENERATION_PROMPTS`` (prompt → generated text)."""
        from optimizers.runtimes.causal import greedy_generate

        outputs = {}
        for prompt in GENERATION_PROMPTS:
            ids = self._tokenizer(prompt)["input_ids"]
            new = greedy_generate(runtime, ids, self.generation_tokens, self._tokenizer.eos_token_id)
            outputs[prompt] = self._tokenizer.decode(new, skip_special_tokens=True)
        return outputs


def _context_of(artifact) -> int:
    import json

    try:
        config = json.loads((Path(artifact.path) / "config.json").read_text())
        return int(config.get("max_position_embeddings") or DEFAULT_WINDOW)
    except (OSError, ValueError, TypeError):
        return DEFAULT_WINDOW


__all__ = [
    "BUILTIN_LM_EVAL",
    "GENERATION_PROMPTS",
    "CausalLMEvaluator",
    "Window",
    "compare_window",
    "lm_metrics",
    "load_lm_texts",
    "sliding_windows",
]
