"""Benchmark for causal LMs: prefill and decode speed at batch 1, in this (isolated) process.

Each round: prefill a fixed prompt (``PROMPT_TOKENS``, or the model's context
minus the decode length when shorter), then decode exactly ``NEW_TOKENS``
greedy tokens one at a time (end-of-sequence ignored, so every variant does the
same work). Rounds repeat until both the settings' iteration count (capped at
``MAX_ROUNDS``) and minimum seconds are reached, after ``warmup`` rounds
(capped at 2). Reported: ``GenerationStats`` (medians over rounds) and, in the
usual per-batch latency table, the prefill latency at batch 1 (so latency
gates such as ``min_speedup`` on ``p50_ms`` work for LLMs too).

Runtimes: PyTorch eager for ``hf`` and llama.cpp for ``gguf`` (threads = the
worker's cores unless the recipe sets ``benchmark.threads``).
"""

from __future__ import annotations

import json
import resource
import time

import numpy as np

from optimizers.artifacts import ModelArtifact
from optimizers.benchmark.hardware import device_name
from optimizers.recipe import BenchmarkSettings
from optimizers.report import BenchmarkInfo, GenerationStats, LatencyStats

PROMPT_TOKENS = 512
NEW_TOKENS = 128
MAX_ROUNDS = 10
_PROMPT_TEXT = (
    "The Python Language Reference describes the syntax and core semantics of the language. "
    "It is terse, but attempts to be exact and complete. The semantics of non-essential built-in "
    "object types and of the built-in functions and modules are described in the library reference. "
)


def prompt_ids(tokenizer, length: int) -> list[int]:
    """``length`` token ids of a fixed English prompt (BOS first), repeated as needed."""
    body = tokenizer(_PROMPT_TEXT, add_special_tokens=False)["input_ids"]
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    while len(ids) < length:
        ids.extend(body)
    return ids[:length]


def _context(artifact: ModelArtifact) -> int:
    try:
        config = json.loads((artifact.folder / "config.json").read_text())
        return int(config.get("max_position_embeddings") or 2048)
    except (OSError, ValueError, TypeError):
        return 2048


def _open(artifact: ModelArtifact, threads: int | None, context: int):
    if artifact.format == "gguf":
        from optimizers.runtimes.llama_cpp import LlamaCppRuntime

        return LlamaCppRuntime(artifact, threads=threads, context=context, all_logits=False)
    from optimizers.runtimes.causal import load_causal_runtime

    return load_causal_runtime(artifact, threads=threads)


def _round(runtime, prompt: list[int], new_tokens: int) -> tuple[float, float, list[float]]:
    """(prefill seconds, time to first token, per-token decode seconds) of one round."""
    started = time.perf_counter()
    logits = runtime.prefill(prompt)
    token = int(np.argmax(logits))
    first = time.perf_counter()
    prefill_s = first - started
    steps = []
    for _ in range(new_tokens - 1):
        t0 = time.perf_counter()
        logits = runtime.step(token)
        token = int(np.argmax(logits))
        steps.append(time.perf_counter() - t0)
    return prefill_s, first - started, steps


def measure_generation(
    artifact: ModelArtifact, settings: BenchmarkSettings
) -> tuple[dict[str, LatencyStats], BenchmarkInfo, GenerationStats]:
    """Time ``artifact`` (see the module docstring); run it in its own process (``benchmark.isolated``)."""
    from optimizers.benchmark.harness import Timings, summarize, window_spread
    from optimizers.runtimes import load_tokenizer

    context = _context(artifact)
    new_tokens = min(NEW_TOKENS, max(2, context // 4))
    prompt_length = max(1, min(PROMPT_TOKENS, context - new_tokens))
    prompt = prompt_ids(load_tokenizer(artifact), prompt_length)
    runtime = _open(artifact, settings.threads, prompt_length + new_tokens)
    for _ in range(min(settings.warmup, 2)):
        _round(runtime, prompt, new_tokens)
    prefills, ttfts, decodes, gaps = [], [], [], []
    wanted = max(3, min(settings.min_iterations, MAX_ROUNDS))
    began = time.perf_counter()
    while len(prefills) < wanted or time.perf_counter() - began < settings.min_seconds:
        prefill_s, ttft_s, steps = _round(runtime, prompt, new_tokens)
        prefills.append(prefill_s)
        ttfts.append(ttft_s)
        decodes.append(sum(steps))
        gaps.extend(steps)
    spread = window_spread(decodes)
    latency = summarize(
        Timings(model=prefills, preprocess=[0.0] * len(prefills), postprocess=[0.0] * len(prefills)),
        batch_size=1,
        seq_len=prompt_length,
    )
    gap_ms = np.asarray(gaps) * 1000.0
    generation = GenerationStats(
        prompt_tokens=prompt_length,
        new_tokens=new_tokens,
        rounds=len(prefills),
        prefill_tokens_per_s=prompt_length / float(np.median(prefills)),
        decode_tokens_per_s=(new_tokens - 1) / float(np.median(decodes)),
        ttft_ms=float(np.median(ttfts)) * 1000.0,
        itl_p50_ms=float(np.percentile(gap_ms, 50)),
        itl_p95_ms=float(np.percentile(gap_ms, 95)),
        stable=spread <= 0.10,
        round_spread=spread,
    )
    info = BenchmarkInfo(
        runtime=runtime.name,
        device=device_name(runtime.device),
        threads=runtime.threads(),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        isolated_process=True,
    )
    return {"1": latency}, info, generation


__all__ = ["NEW_TOKENS", "PROMPT_TOKENS", "measure_generation", "prompt_ids"]
