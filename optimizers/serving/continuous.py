"""Static vs continuous (iteration-level) batching for causal LMs: measured step latencies → simulated serving.

Three parts:

1. **Measurement** (``measure_step_latencies``, run in its own process by
   ``measure_isolated``): PyTorch eager via transformers with a ``DynamicCache``.
   For every context length ``C`` of the grid, one prompt of ``C`` random
   tokens is prefilled at batch 1 and its cache copied to each batch size ``B``
   (``batch_repeat_interleave``: the same tensors a batch of ``B`` prompts would
   give); then one decode step (``B`` new tokens on a cache of ``C``) is timed
   ``warmup + repeats`` times, cropping the step's token off again after each, and
   the median of the timed repeats is the point's latency. Prefill latency is
   timed the same way at batch 1 for each prompt length. Every sample is kept.
2. **Step-latency model** (``StepLatencyModel``): bilinear interpolation of the
   measured grid in (batch size, context length) and linear interpolation of
   prefill latency in prompt tokens. At a grid point it returns the measured
   median exactly. Outside the grid it clamps to the nearest edge (no
   extrapolation) and says so: every clamped lookup is counted and reported.
3. **Discrete-event simulation** (``simulate_static``, ``simulate_continuous``):
   pure and deterministic given the seed. Requests arrive as an open-loop
   Poisson process (``batching.poisson_arrivals``); prompt and output lengths
   are drawn from the spec's distributions (``LengthDistribution``). An output
   of ``n`` tokens is one prefill (which yields the first token) and ``n − 1``
   decode steps. Both policies pay the same per-request prefill (the batch-1
   measurement; batched prefill would be cheaper per token for both alike).

   - *Static*: like Triton's dynamic batcher over whole requests — wait from the
     oldest queued request's arrival until ``max_batch`` are queued or
     ``max_wait_ms`` has passed, prefill them all, then decode the whole batch
     until its longest output is done (finished sequences keep their slot; the
     tensors are padded to the longest prompt, so a step costs
     ``step(batch, longest prompt + tokens so far)``). The batch returns together,
     as ``generate()`` does.
   - *Continuous*: at every iteration, admit queued requests up to ``max_batch``
     running ones; the iteration costs the new requests' prefills plus one decode
     step of the running ones at their mean context (paged KV cache: no padding);
     a finished request leaves at once and frees its slot.

   Latency runs from a request's arrival to its last token; TTFT to its first.

The result is ``ContinuousBatchingReport`` (in ``ServingReport.continuous``): the
inputs used, the measured points, and per policy and offered rate the throughput
(tokens/s, requests/s), latency p50/p95 and TTFT p50/p95. It is an **estimate**.

``vllm_benchmark`` (option ``vllm_benchmark: true``): where ``vllm`` imports and
CUDA is available, the same request mix runs through vLLM's offline
``LLM.generate`` (all requests submitted at once, ``ignore_eos`` so every output
has its drawn length) in a child process and is reported as a measurement beside
the simulated offline point; elsewhere it records why it was skipped.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.serving.batching import SATURATION_SHARE, poisson_arrivals

#: How the simulation turns measured points into step costs (shown on the results page).
INTERPOLATION = (
    "decode step: bilinear interpolation of the measured medians in (batch size, context length); "
    "prefill: linear interpolation in prompt tokens; outside the measured grid the nearest edge is used "
    "(clamped, not extrapolated) and each such lookup is counted"
)

Policy = Literal["static", "continuous"]


# --- the request mix --------------------------------------------------------------------------------


class LengthDistribution(BaseModel):
    """Token counts of prompts or outputs: ``{dist: fixed, value}``, ``{dist: uniform, low, high}``
    (inclusive) or ``{dist: lognormal, median, sigma, low, high}`` (clipped to ``[low, high]``)."""

    model_config = ConfigDict(extra="forbid")

    dist: Literal["fixed", "uniform", "lognormal"]
    value: int | None = Field(None, ge=1, le=131_072)
    low: int = Field(1, ge=1, le=131_072)
    high: int | None = Field(None, ge=1, le=131_072)
    median: float | None = Field(None, gt=0, le=131_072)
    sigma: float = Field(0.5, gt=0, le=5)

    @model_validator(mode="after")
    def _complete(self) -> LengthDistribution:
        if self.dist == "fixed" and self.value is None:
            raise ValueError("a fixed length needs 'value'")
        if self.dist in ("uniform", "lognormal") and self.high is None:
            raise ValueError(f"a {self.dist} length needs 'high' (the largest length it may draw)")
        if self.dist == "lognormal" and self.median is None:
            raise ValueError("a lognormal length needs 'median'")
        if self.high is not None and self.high < self.low:
            raise ValueError(f"'high' ({self.high}) is below 'low' ({self.low})")
        return self

    @property
    def lower(self) -> int:
        return self.value if self.dist == "fixed" else self.low

    @property
    def upper(self) -> int:
        """The largest length this distribution can draw (the measurement grid covers it)."""
        return self.value if self.dist == "fixed" else int(self.high)

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` integer lengths in ``[lower, upper]``."""
        if self.dist == "fixed":
            return np.full(count, self.value, dtype=np.int64)
        if self.dist == "uniform":
            return rng.integers(self.low, self.high + 1, size=count, dtype=np.int64)
        drawn = rng.lognormal(math.log(self.median), self.sigma, size=count)
        return np.clip(np.rint(drawn), self.low, self.high).astype(np.int64)

    def describe(self) -> str:
        if self.dist == "fixed":
            return f"fixed {self.value}"
        if self.dist == "uniform":
            return f"uniform {self.low}–{self.high}"
        return f"lognormal median {self.median:g}, σ {self.sigma:g}, clipped to {self.low}–{self.high}"


@dataclass(frozen=True)
class Request:
    index: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int


def request_mix(
    count: int,
    rate_per_s: float | None,
    prompt_len: LengthDistribution,
    output_len: LengthDistribution,
    *,
    seed: int = 0,
) -> list[Request]:
    """``count`` requests: Poisson arrivals at ``rate_per_s`` (None: all at t = 0), lengths from the distributions.

    The lengths depend on ``seed`` only, not on the rate, so every rate and both
    policies serve the same requests; arrival gaps at different rates are the
    same draws scaled.
    """
    if count < 1:
        raise ValueError("count must be ≥ 1")
    rng = np.random.default_rng([seed, 1])  # own stream: independent of the arrival draws
    prompts = prompt_len.sample(rng, count)
    outputs = output_len.sample(rng, count)
    arrivals = np.zeros(count) if rate_per_s is None else poisson_arrivals(rate_per_s, count, seed=seed)
    return [Request(index, float(arrivals[index]), int(prompts[index]), int(outputs[index])) for index in range(count)]


# --- measurement ------------------------------------------------------------------------------------


class StepPoint(BaseModel):
    """One decode step of ``batch_size`` sequences whose KV cache holds ``context_len`` tokens."""

    batch_size: int
    context_len: int
    step_ms: float
    samples_ms: list[float]


class PrefillPoint(BaseModel):
    """Prefill of one prompt of ``prompt_tokens`` tokens (batch 1), first token's logits included."""

    prompt_tokens: int
    prefill_ms: float
    samples_ms: list[float]


class StepGrid(BaseModel):
    """What to measure; unset lists are derived from the request mix (``resolve_grid``)."""

    model_config = ConfigDict(extra="forbid")

    batch_sizes: list[int] | None = None
    context_lens: list[int] | None = None
    prompt_lens: list[int] | None = None
    repeats: int = Field(5, ge=3, le=200)
    warmup: int = Field(2, ge=0, le=20)
    #: Torch intra-op threads (None: torch's default). One by default: a small model's decode step gains
    #: little from more, and on a shared worker two spinning threads slowed steps ten-fold here.
    threads: int | None = Field(1, ge=1, le=1024)

    @field_validator("batch_sizes", "context_lens", "prompt_lens")
    @classmethod
    def _positive(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(item < 1 or item > 131_072 for item in value)):
            raise ValueError("grid lists must be non-empty lists of integers between 1 and 131072")
        return sorted(set(value)) if value is not None else None


class StepMeasurement(BaseModel):
    """Every measured point, and where and how it was measured."""

    model: str
    runtime: str
    device: str
    threads: int
    repeats: int
    warmup: int
    steps: list[StepPoint]
    prefills: list[PrefillPoint]
    seconds: float


def _spread(low: int, high: int, count: int) -> list[int]:
    return sorted({int(round(value)) for value in np.linspace(low, high, count)})


def resolve_grid(grid: StepGrid, *, max_batch: int, prompt_len: LengthDistribution,
                 output_len: LengthDistribution) -> StepGrid:  # fmt: skip
    """``grid`` with every list set: by default batch sizes 1, 2, 4, … up to ``max_batch`` (and it),
    four context lengths from the shortest prompt to the longest prompt + output, and four prompt
    lengths across the prompt distribution, so the simulation never leaves the measured grid."""
    batches = grid.batch_sizes or sorted({2**power for power in range(max_batch.bit_length()) if 2**power <= max_batch}
                                         | {max_batch})  # fmt: skip
    longest = prompt_len.upper + output_len.upper - 1  # the last step's cache
    contexts = grid.context_lens or _spread(prompt_len.lower, longest, 4)
    prompts = grid.prompt_lens or _spread(prompt_len.lower, prompt_len.upper, 4)
    return grid.model_copy(update={"batch_sizes": batches, "context_lens": contexts, "prompt_lens": prompts})


def _timed(call, warmup: int, repeats: int, after=None) -> list[float]:
    samples = []
    for index in range(warmup + repeats):
        began = time.perf_counter()
        call()
        elapsed = time.perf_counter() - began
        if after is not None:
            after()
        if index >= warmup:
            samples.append(elapsed * 1000.0)
    return samples


def measure_step_latencies(artifact: ModelArtifact, grid: StepGrid) -> StepMeasurement:
    """Measure ``grid`` (every list set: ``resolve_grid``) on ``artifact`` in this process (see the module docstring).

    ``PreflightError`` for artifacts other than ``hf`` causal LMs and for a context
    beyond the model's positions.
    """
    import copy

    import torch
    from transformers import DynamicCache

    from optimizers.benchmark.hardware import device_name
    from optimizers.runtimes.torch_eager import load_causal_lm

    if artifact.task != "causal-lm" or artifact.format != "hf":
        raise PreflightError(f"step latencies are measured on hf causal LMs, not {artifact.format} {artifact.task}")
    if grid.threads:
        torch.set_num_threads(grid.threads)
    began = time.perf_counter()
    model = load_causal_lm(artifact)
    config = model.config
    positions = int(getattr(config, "max_position_embeddings", 0) or 0)
    longest = max(max(grid.context_lens) + 1, max(grid.prompt_lens))
    if positions and longest > positions:
        raise PreflightError(f"the grid needs {longest} positions; the model has {positions}")
    generator = torch.Generator().manual_seed(0)
    # Ordinary token ids (away from the special ones at the start of the vocabulary).
    vocab = int(config.vocab_size)
    tokens = torch.randint(min(3, vocab - 1), vocab, (1, max(max(grid.context_lens), max(grid.prompt_lens))),
                           generator=generator)  # fmt: skip
    steps: list[StepPoint] = []
    prefills: list[PrefillPoint] = []
    with torch.inference_mode():
        for context in grid.context_lens:
            prefilled = model(
                input_ids=tokens[:, :context], past_key_values=DynamicCache(config=config), use_cache=True
            )
            base = prefilled.past_key_values
            for batch in grid.batch_sizes:
                cache = copy.deepcopy(base)
                if batch > 1:
                    cache.batch_repeat_interleave(batch)
                step_input = tokens[:, context - 1 : context].expand(batch, 1).contiguous()

                def step(cache=cache, step_input=step_input) -> None:
                    model(input_ids=step_input, past_key_values=cache, use_cache=True)

                # crop(-1) drops the step's token again (a negative count: positive lengths are deprecated in 5.x).
                samples = _timed(step, grid.warmup, grid.repeats, after=lambda cache=cache: cache.crop(-1))
                if cache.get_seq_length() != context:
                    raise PassError(f"the KV cache holds {cache.get_seq_length()} tokens after cropping, not {context}")
                steps.append(StepPoint(batch_size=batch, context_len=context, step_ms=statistics.median(samples),
                                       samples_ms=samples))  # fmt: skip
        for length in grid.prompt_lens:

            def prefill(length=length) -> None:
                model(input_ids=tokens[:, :length], past_key_values=DynamicCache(config=config), use_cache=True)

            samples = _timed(prefill, grid.warmup, grid.repeats)
            prefills.append(
                PrefillPoint(prompt_tokens=length, prefill_ms=statistics.median(samples), samples_ms=samples)
            )
    return StepMeasurement(
        model=artifact.name,
        runtime="pytorch-eager",
        device=device_name("cpu"),
        threads=torch.get_num_threads(),
        repeats=grid.repeats,
        warmup=grid.warmup,
        steps=steps,
        prefills=prefills,
        seconds=time.perf_counter() - began,
    )


def measure_isolated(artifact: ModelArtifact, grid: StepGrid, *, timeout_s: float = 1800.0) -> StepMeasurement:
    """``measure_step_latencies`` in a fresh interpreter; ``PassError`` with the child's output tail if it fails."""
    from optimizers.benchmark.isolated import run_in_child

    request = {"kind": "measure", "artifact": artifact.model_dump(mode="json"), "grid": grid.model_dump()}
    result = run_in_child(__name__, request, what=f"step-latency measurement of {artifact.name}", timeout_s=timeout_s)
    return StepMeasurement.model_validate(result)


# --- the step-latency model -------------------------------------------------------------------------


def _bracket(grid: np.ndarray, value: float) -> tuple[int, int, float, bool]:
    """(lower index, upper index, weight of the upper, clamped) of ``value`` on the ascending ``grid``."""
    if value <= grid[0]:
        return 0, 0, 0.0, value < grid[0]
    if value >= grid[-1]:
        return len(grid) - 1, len(grid) - 1, 0.0, value > grid[-1]
    upper = int(np.searchsorted(grid, value, side="right"))
    lower = upper - 1
    return lower, upper, float((value - grid[lower]) / (grid[upper] - grid[lower])), False


class StepLatencyModel:
    """Seconds per decode step and per prefill, interpolated from measured points (``INTERPOLATION``).

    ``step_ms[i][j]`` is the step at ``batch_sizes[i]`` and ``context_lens[j]``; the
    grid must be complete. Lookups return ``(seconds, clamped)``.
    """

    def __init__(self, batch_sizes: Sequence[int], context_lens: Sequence[int], step_ms: Sequence[Sequence[float]],
                 prefill_tokens: Sequence[int], prefill_ms: Sequence[float]) -> None:  # fmt: skip
        self.batch_sizes = np.asarray(batch_sizes, dtype=float)
        self.context_lens = np.asarray(context_lens, dtype=float)
        self.step = np.asarray(step_ms, dtype=float) / 1000.0
        self.prefill_tokens = np.asarray(prefill_tokens, dtype=float)
        self.prefill = np.asarray(prefill_ms, dtype=float) / 1000.0
        if self.step.shape != (len(self.batch_sizes), len(self.context_lens)) or len(self.prefill) != len(
            self.prefill_tokens
        ):
            raise ValueError("step_ms must be batch_sizes × context_lens, prefill_ms one per prefill token count")
        for axis in (self.batch_sizes, self.context_lens, self.prefill_tokens):
            if len(axis) == 0 or np.any(np.diff(axis) <= 0):
                raise ValueError("grid axes must be non-empty and strictly ascending")

    @classmethod
    def from_measurement(cls, measurement: StepMeasurement) -> StepLatencyModel:
        """The model of a measurement; ``ValueError`` if some (batch, context) point is missing."""
        batches = sorted({point.batch_size for point in measurement.steps})
        contexts = sorted({point.context_len for point in measurement.steps})
        table = {(point.batch_size, point.context_len): point.step_ms for point in measurement.steps}
        missing = [(batch, context) for batch in batches for context in contexts if (batch, context) not in table]
        if missing:
            raise ValueError(f"the measured grid is incomplete: no point at (batch, context) {missing[:3]}")
        prefills = sorted(measurement.prefills, key=lambda point: point.prompt_tokens)
        return cls(
            batches,
            contexts,
            [[table[(batch, context)] for context in contexts] for batch in batches],
            [point.prompt_tokens for point in prefills],
            [point.prefill_ms for point in prefills],
        )

    def step_s(self, batch_size: float, context_len: float) -> tuple[float, bool]:
        b0, b1, wb, clamped_b = _bracket(self.batch_sizes, batch_size)
        c0, c1, wc, clamped_c = _bracket(self.context_lens, context_len)
        grid = self.step
        low = grid[b0, c0] * (1 - wc) + grid[b0, c1] * wc
        high = grid[b1, c0] * (1 - wc) + grid[b1, c1] * wc
        return float(low * (1 - wb) + high * wb), clamped_b or clamped_c

    def prefill_s(self, tokens: float) -> tuple[float, bool]:
        lower, upper, weight, clamped = _bracket(self.prefill_tokens, tokens)
        return float(self.prefill[lower] * (1 - weight) + self.prefill[upper] * weight), clamped


# --- the simulation ---------------------------------------------------------------------------------


@dataclass
class Trace:
    """What one simulated run did, per request (index order) and per iteration."""

    policy: Policy
    requests: list[Request]
    first_token_s: np.ndarray
    finish_s: np.ndarray
    #: Tokens produced per request (counted as the simulation ran: conservation checks compare with outputs).
    tokens: np.ndarray
    #: How many times each request was completed (1 for every request in a correct run).
    completions: np.ndarray
    #: Batch size of every decode step.
    decode_batches: list[int]
    iterations: int
    clamped_lookups: int


def _new_trace(policy: Policy, requests: Sequence[Request]) -> Trace:
    count = len(requests)
    return Trace(policy, list(requests), np.full(count, np.nan), np.full(count, np.nan), np.zeros(count, np.int64),
                 np.zeros(count, np.int64), [], 0, 0)  # fmt: skip


def _check(requests: Sequence[Request], max_batch: int) -> list[Request]:
    if max_batch < 1:
        raise ValueError("max_batch must be ≥ 1")
    if any(request.output_tokens < 1 or request.prompt_tokens < 1 for request in requests):
        raise ValueError("every request needs at least one prompt and one output token")
    if [request.index for request in requests] != list(range(len(requests))):
        raise ValueError("requests must be indexed 0..n-1 in order")
    if any(later.arrival_s < earlier.arrival_s for earlier, later in zip(requests, requests[1:], strict=False)):
        raise ValueError("requests must be in arrival order")
    return list(requests)


def simulate_static(requests: Sequence[Request], model: StepLatencyModel, *, max_batch: int,
                    max_wait_s: float) -> Trace:  # fmt: skip
    """Static (request-level) batching of ``requests`` (see the module docstring); pure."""
    requests = _check(requests, max_batch)
    trace = _new_trace("static", requests)
    arrivals = np.array([request.arrival_s for request in requests])
    count, served, free_at = len(requests), 0, 0.0
    while served < count:
        fill = served + max_batch - 1
        fill_time = arrivals[fill] if fill < count else math.inf
        start = max(free_at, arrivals[served], min(arrivals[served] + max_wait_s, fill_time))
        arrived = int(np.searchsorted(arrivals, start, side="right"))
        batch = requests[served : max(served + 1, min(served + max_batch, arrived))]
        clock = start
        for request in batch:
            seconds, clamped = model.prefill_s(request.prompt_tokens)
            clock += seconds
            trace.clamped_lookups += clamped
        trace.iterations += 1
        for request in batch:  # the prefill's logits give every request its first token
            trace.first_token_s[request.index] = clock
            trace.tokens[request.index] += 1
        longest_prompt = max(request.prompt_tokens for request in batch)
        for done in range(1, max(request.output_tokens for request in batch)):
            seconds, clamped = model.step_s(len(batch), longest_prompt + done)
            clock += seconds
            trace.clamped_lookups += clamped
            trace.iterations += 1
            trace.decode_batches.append(len(batch))
            for request in batch:
                if request.output_tokens > done:
                    trace.tokens[request.index] += 1
        for request in batch:  # the batch returns as a whole
            trace.finish_s[request.index] = clock
            trace.completions[request.index] += 1
        served += len(batch)
        free_at = clock
    return trace


def simulate_continuous(requests: Sequence[Request], model: StepLatencyModel, *, max_batch: int) -> Trace:
    """Continuous (iteration-level) batching of ``requests`` (see the module docstring); pure."""
    requests = _check(requests, max_batch)
    trace = _new_trace("continuous", requests)
    count, queued, finished, clock = len(requests), 0, 0, 0.0
    running: list[Request] = []
    while finished < count:
        if not running and requests[queued].arrival_s > clock:
            clock = requests[queued].arrival_s  # idle until the next arrival
        admitted = []
        while queued < count and requests[queued].arrival_s <= clock and len(running) + len(admitted) < max_batch:
            admitted.append(requests[queued])
            queued += 1
        cost = 0.0
        for request in admitted:
            seconds, clamped = model.prefill_s(request.prompt_tokens)
            cost += seconds
            trace.clamped_lookups += clamped
        if running:
            context = float(np.mean([request.prompt_tokens + trace.tokens[request.index] for request in running]))
            seconds, clamped = model.step_s(len(running), context)
            cost += seconds
            trace.clamped_lookups += clamped
            trace.decode_batches.append(len(running))
        clock += cost
        trace.iterations += 1
        still: list[Request] = []
        for request in running:
            trace.tokens[request.index] += 1
            if trace.tokens[request.index] >= request.output_tokens:
                trace.finish_s[request.index] = clock
                trace.completions[request.index] += 1
                finished += 1
            else:
                still.append(request)
        for request in admitted:
            trace.first_token_s[request.index] = clock
            trace.tokens[request.index] += 1
            if request.output_tokens == 1:
                trace.finish_s[request.index] = clock
                trace.completions[request.index] += 1
                finished += 1
            else:
                still.append(request)
        running = still
    return trace


class PolicyResult(BaseModel):
    """One policy at one offered rate (``None``: every request at t = 0)."""

    policy: Policy
    offered_rate_per_s: float | None
    requests: int
    completed: int
    output_tokens: int
    #: From the first arrival to the last completion.
    duration_s: float
    throughput_tokens_per_s: float
    throughput_requests_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_mean_ms: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    mean_decode_batch: float
    iterations: int
    #: Completed requests per second below ``SATURATION_SHARE`` of the offered rate: the queue grows.
    saturated: bool
    clamped_lookups: int


def summarize(trace: Trace, offered_rate_per_s: float | None) -> PolicyResult:
    arrivals = np.array([request.arrival_s for request in trace.requests])
    latency = (trace.finish_s - arrivals) * 1000.0
    ttft = (trace.first_token_s - arrivals) * 1000.0
    completed = int(np.count_nonzero(trace.completions))
    duration = max(float(np.nanmax(trace.finish_s) - arrivals.min()), 1e-12)
    per_s = completed / duration
    return PolicyResult(
        policy=trace.policy,
        offered_rate_per_s=offered_rate_per_s,
        requests=len(trace.requests),
        completed=completed,
        output_tokens=int(trace.tokens.sum()),
        duration_s=duration,
        throughput_tokens_per_s=float(trace.tokens.sum()) / duration,
        throughput_requests_per_s=per_s,
        latency_p50_ms=float(np.percentile(latency, 50)),
        latency_p95_ms=float(np.percentile(latency, 95)),
        latency_mean_ms=float(np.mean(latency)),
        ttft_p50_ms=float(np.percentile(ttft, 50)),
        ttft_p95_ms=float(np.percentile(ttft, 95)),
        mean_decode_batch=float(np.mean(trace.decode_batches)) if trace.decode_batches else 0.0,
        iterations=trace.iterations,
        saturated=offered_rate_per_s is not None and per_s < SATURATION_SHARE * offered_rate_per_s,
        clamped_lookups=trace.clamped_lookups,
    )


# --- vLLM -------------------------------------------------------------------------------------------


class VllmResult(BaseModel):
    """vLLM's offline ``LLM.generate`` on the request mix, or why it did not run."""

    status: Literal["measured", "skipped", "failed"]
    reason: str | None = None
    version: str | None = None
    device: str | None = None
    requests: int = 0
    output_tokens: int = 0
    seconds: float | None = None
    throughput_tokens_per_s: float | None = None
    throughput_requests_per_s: float | None = None
    #: Per-request figures, when the installed vLLM reports request metrics.
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


def vllm_skip_reason(artifact: ModelArtifact) -> str | None:
    """Why vLLM cannot measure ``artifact`` here (``None``: it can)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "vLLM not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA"
    if artifact.format != "hf":
        return f"vLLM loads Hugging Face checkpoints, not {artifact.format} artifacts"
    return None


def _request_metrics(output: Any) -> tuple[float | None, float | None]:
    """(TTFT s, end-to-end s) from a ``RequestOutput.metrics`` if this vLLM version reports them."""
    metrics = getattr(output, "metrics", None)
    if metrics is None:
        return None, None
    if getattr(metrics, "first_token_latency", 0.0):  # V1 RequestStateStats: TTFT only, clocks differ otherwise
        return float(metrics.first_token_latency), None
    arrival, first, finished = (
        getattr(metrics, name, None) for name in ("arrival_time", "first_token_time", "finished_time")
    )
    if arrival and first:  # V0 RequestMetrics: wall-clock times
        return float(first - arrival), float(finished - arrival) if finished else None
    return None, None


def run_vllm(artifact: ModelArtifact, requests: Sequence[Request], *, max_batch: int, seed: int) -> VllmResult:
    """Generate ``requests`` with vLLM in this process (``vllm_benchmark`` runs it in a child).

    Prompts are token ids (the tokenizer is not initialised); sampling is greedy with
    ``ignore_eos`` and ``max_tokens`` = each request's output length; a short
    warm-up batch runs first (graph capture, compilation). Only for a CUDA machine.
    """
    import torch
    import vllm
    from vllm import LLM, SamplingParams

    config = json.loads((artifact.folder / "config.json").read_text())
    vocab = int(config["vocab_size"])
    rng = np.random.default_rng([seed, 2])
    prompts = [
        {"prompt_token_ids": rng.integers(3, vocab, size=request.prompt_tokens).tolist()} for request in requests
    ]
    params = [
        SamplingParams(temperature=0.0, max_tokens=request.output_tokens, ignore_eos=True, detokenize=False)
        for request in requests
    ]
    llm = LLM(
        model=str(artifact.folder),
        skip_tokenizer_init=True,
        max_num_seqs=max_batch,
        max_model_len=int(config.get("max_position_embeddings") or 2048),
        seed=seed,
        gpu_memory_utilization=0.5,
    )
    warm = min(len(prompts), max_batch)
    llm.generate(prompts[:warm], params[:warm], use_tqdm=False)
    began = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - began
    tokens = sum(len(output.outputs[0].token_ids) for output in outputs)
    timings = [_request_metrics(output) for output in outputs]
    ttfts = [first * 1000.0 for first, _ in timings if first is not None]
    ends = [end * 1000.0 for _, end in timings if end is not None]

    def percentile(values: list[float], q: float) -> float | None:
        return float(np.percentile(values, q)) if len(values) == len(outputs) else None

    return VllmResult(
        status="measured",
        version=getattr(vllm, "__version__", None),
        device=torch.cuda.get_device_name(0),
        requests=len(outputs),
        output_tokens=tokens,
        seconds=seconds,
        throughput_tokens_per_s=tokens / seconds,
        throughput_requests_per_s=len(outputs) / seconds,
        ttft_p50_ms=percentile(ttfts, 50),
        ttft_p95_ms=percentile(ttfts, 95),
        latency_p50_ms=percentile(ends, 50),
        latency_p95_ms=percentile(ends, 95),
    )


def vllm_benchmark(artifact: ModelArtifact, requests: Sequence[Request], *, max_batch: int, seed: int,
                   timeout_s: float = 1800.0) -> VllmResult:  # fmt: skip
    """``run_vllm`` in a child process, or a ``skipped`` result with the reason (``vllm_skip_reason``);
    ``failed`` with the child's output tail when vLLM raises."""
    reason = vllm_skip_reason(artifact)
    if reason is not None:
        return VllmResult(status="skipped", reason=reason)
    from optimizers.benchmark.isolated import run_in_child

    request = {
        "kind": "vllm",
        "artifact": artifact.model_dump(mode="json"),
        "requests": [[item.arrival_s, item.prompt_tokens, item.output_tokens] for item in requests],
        "max_batch": max_batch,
        "seed": seed,
    }
    try:
        result = run_in_child(__name__, request, what=f"vLLM benchmark of {artifact.name}", timeout_s=timeout_s)
    except (PassError, subprocess.TimeoutExpired) as error:
        return VllmResult(status="failed", reason=str(error)[-1000:])
    return VllmResult.model_validate(result)


# --- the analysis -----------------------------------------------------------------------------------


class ContinuousBatchingOptions(BaseModel):
    """The ``continuous_batching`` section of a serving analysis (causal LMs)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Offered rates in requests/s; when given, ``rate_factors`` is ignored.
    rates_per_s: list[float] | None = None
    #: Offered rates as multiples of the estimated batch-1 capacity (1 / mean request time alone).
    rate_factors: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])
    max_batch: int = Field(16, ge=1, le=1024)
    #: Static batching waits at most this long for its batch to fill.
    max_wait_ms: float = Field(20.0, ge=0, le=600_000)
    prompt_len: LengthDistribution = Field(default_factory=lambda: LengthDistribution(dist="uniform", low=16, high=256))
    output_len: LengthDistribution = Field(default_factory=lambda: LengthDistribution(dist="uniform", low=16, high=128))
    requests: int = Field(200, ge=1, le=100_000)
    seed: int = 0
    measure: StepGrid = Field(default_factory=StepGrid)
    #: Measure with vLLM (offline ``LLM.generate``) where it is installed and CUDA is available.
    vllm_benchmark: bool = False

    @field_validator("rate_factors", "rates_per_s")
    @classmethod
    def _rates(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(rate <= 0 or not math.isfinite(rate) for rate in value)):
            raise ValueError("rates must be a non-empty list of positive numbers")
        return sorted(set(value)) if value is not None else None


class ContinuousBatchingReport(BaseModel):
    """The estimate, what it used, and the measured points it rests on."""

    #: Always true for the simulated rows: they are computed from measured step latencies, not measured.
    estimate: bool = True
    options: ContinuousBatchingOptions
    #: The measured grid (``options.measure`` with every list resolved).
    grid: StepGrid
    measurement: StepMeasurement
    interpolation: str = INTERPOLATION
    #: 1 / (prefill of the mean prompt + decode of the mean output at batch 1): what ``rate_factors`` multiply.
    batch1_capacity_per_s: float
    rates_per_s: list[float]
    #: Per offered rate, static then continuous.
    results: list[PolicyResult]
    #: Every request at t = 0 (the offline case, what ``vllm`` measures), static then continuous.
    offline: list[PolicyResult]
    vllm: VllmResult | None = None
    notes: list[str] = Field(default_factory=list)

    def result(self, policy: Policy, rate: float | None) -> PolicyResult | None:
        rows = self.offline if rate is None else self.results
        return next(
            (row for row in rows if row.policy == policy and (rate is None or row.offered_rate_per_s == rate)), None
        )


def batch1_capacity_per_s(model: StepLatencyModel, options: ContinuousBatchingOptions) -> float:
    """Requests/s one sequence at a time manages for the mean request (expected lengths from a large seeded sample)."""
    rng = np.random.default_rng([options.seed, 3])
    prompt = float(np.mean(options.prompt_len.sample(rng, 4096)))
    output = float(np.mean(options.output_len.sample(rng, 4096)))
    prefill, _ = model.prefill_s(prompt)
    step, _ = model.step_s(1, prompt + output / 2)
    return 1.0 / max(prefill + (output - 1) * step, 1e-9)


def simulate(
    model: StepLatencyModel, options: ContinuousBatchingOptions, rate_per_s: float | None
) -> list[PolicyResult]:
    """Static and continuous results for one offered rate (``None``: all at t = 0); pure."""
    mix = request_mix(options.requests, rate_per_s, options.prompt_len, options.output_len, seed=options.seed)
    static = simulate_static(mix, model, max_batch=options.max_batch, max_wait_s=options.max_wait_ms / 1000.0)
    continuous = simulate_continuous(mix, model, max_batch=options.max_batch)
    return [summarize(static, rate_per_s), summarize(continuous, rate_per_s)]


def estimate_from_measurement(measurement: StepMeasurement, options: ContinuousBatchingOptions,
                              grid: StepGrid) -> ContinuousBatchingReport:  # fmt: skip
    """Everything after the measurement (pure): capacity, rates, both policies at each rate and offline."""
    model = StepLatencyModel.from_measurement(measurement)
    capacity = batch1_capacity_per_s(model, options)
    rates = list(options.rates_per_s) if options.rates_per_s else [factor * capacity for factor in options.rate_factors]
    results = [row for rate in rates for row in simulate(model, options, rate)]
    offline = simulate(model, options, None)
    report = ContinuousBatchingReport(
        options=options,
        grid=grid,
        measurement=measurement,
        batch1_capacity_per_s=capacity,
        rates_per_s=rates,
        results=results,
        offline=offline,
    )
    clamped = sum(row.clamped_lookups for row in results + offline)
    if clamped:
        report.notes.append(
            f"{clamped} step or prefill lookups fell outside the measured grid and used its nearest edge: "
            "widen measure.batch_sizes / context_lens / prompt_lens to cover the request mix."
        )
    return report


def analyse_continuous_batching(artifact: ModelArtifact, options: ContinuousBatchingOptions,
                                reporter: Any = None) -> ContinuousBatchingReport:  # fmt: skip
    """Measure (own process), simulate, and optionally run vLLM, for the ``hf`` causal LM ``artifact``.

    ``reporter`` (the pipeline's: ``progress(stage, percent, message)``, ``log``,
    ``check_cancelled``) follows progress. ``PreflightError`` when the request mix does
    not fit the model's positions or the artifact is not an ``hf`` checkpoint.
    """
    if artifact.format != "hf":
        raise PreflightError(f"continuous batching is estimated from PyTorch step latencies: needs an hf artifact, "
                             f"not {artifact.format}")  # fmt: skip
    config = json.loads((artifact.folder / "config.json").read_text())
    positions = int(config.get("max_position_embeddings") or 0)
    longest = options.prompt_len.upper + options.output_len.upper
    if positions and longest > positions:
        raise PreflightError(
            f"continuous_batching: the longest prompt + output ({options.prompt_len.upper} + "
            f"{options.output_len.upper} = {longest} tokens) exceeds the model's {positions} positions"
        )
    grid = resolve_grid(options.measure, max_batch=options.max_batch, prompt_len=options.prompt_len,
                        output_len=options.output_len)  # fmt: skip
    points = len(grid.batch_sizes) * len(grid.context_lens)
    if reporter is not None:
        reporter.check_cancelled()
        reporter.progress("step latencies", 86.0, f"measuring {points} decode points and "
                          f"{len(grid.prompt_lens)} prefill lengths, own process")  # fmt: skip
    measurement = measure_isolated(artifact, grid)
    if reporter is not None:
        reporter.check_cancelled()
        reporter.progress("batching simulation", 93.0, "static vs continuous batching, discrete-event simulation")
    report = estimate_from_measurement(measurement, options, grid)
    if options.vllm_benchmark:
        if reporter is not None:
            reporter.check_cancelled()
            reporter.progress("vllm benchmark", 95.0, "vLLM offline generate on the same request mix")
        mix = request_mix(options.requests, None, options.prompt_len, options.output_len, seed=options.seed)
        report.vllm = vllm_benchmark(artifact, mix, max_batch=options.max_batch, seed=options.seed)
        if report.vllm.status != "measured" and reporter is not None:
            reporter.log(f"vLLM benchmark {report.vllm.status}: {report.vllm.reason}")
    return report


def continuous_figure(report: ContinuousBatchingReport) -> dict[str, Any]:
    """Plotly figure (JSON-ready): throughput (tokens/s) vs p95 latency per offered rate, static vs continuous."""
    data: list[dict[str, Any]] = []
    for policy in ("static", "continuous"):
        rows = [row for row in report.results if row.policy == policy]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"{policy} batching (estimate)",
                "x": [row.throughput_tokens_per_s for row in rows],
                "y": [row.latency_p95_ms for row in rows],
                "text": [
                    f"offered {row.offered_rate_per_s:.2f} req/s" + (" (saturated)" if row.saturated else "")
                    for row in rows
                ],
                "marker": {"symbol": ["x" if row.saturated else "circle" for row in rows]},
            }
        )
    vllm = report.vllm
    if vllm is not None and vllm.status == "measured" and vllm.throughput_tokens_per_s:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "vLLM measured (offline, all at t = 0)",
                "x": [vllm.throughput_tokens_per_s],
                # Without per-request metrics the whole run's duration bounds every request's latency.
                "y": [vllm.latency_p95_ms if vllm.latency_p95_ms is not None else (vllm.seconds or 0) * 1000.0],
                "text": ["p95 latency" if vllm.latency_p95_ms is not None else "p95 ≤ the run's duration"],
                "marker": {"size": 14, "symbol": "star"},
            }
        )
    return {
        "data": data,
        "layout": {
            "title": {"text": "Static vs continuous batching (estimate): throughput vs p95 latency"},
            "xaxis": {"title": {"text": "throughput (output tokens/s)"}},
            "yaxis": {"title": {"text": "p95 latency (ms)"}, "type": "log"},
        },
    }


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    artifact = ModelArtifact.model_validate(request["artifact"])
    if request["kind"] == "vllm":
        mix = [Request(index, *item) for index, item in enumerate(request["requests"])]
        result = run_vllm(artifact, mix, max_batch=request["max_batch"], seed=request["seed"])
    else:
        result = measure_step_latencies(artifact, StepGrid.model_validate(request["grid"]))
    Path(argv[1]).write_text(result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
