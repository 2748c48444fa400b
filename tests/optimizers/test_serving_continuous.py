"""Static vs continuous batching: the simulation on fixed step latencies (hand-checkable), the interpolation,
the measurement on the tiny LM, the serving analysis wiring, and the vLLM option's clean skip. No timing thresholds."""

from __future__ import annotations

import importlib.util
import json
import statistics

import numpy as np
import pytest

from optimizers.errors import RecipeError
from optimizers.serving.continuous import (
    ContinuousBatchingOptions,
    LengthDistribution,
    PrefillPoint,
    Request,
    StepGrid,
    StepLatencyModel,
    StepMeasurement,
    StepPoint,
    continuous_figure,
    estimate_from_measurement,
    request_mix,
    resolve_grid,
    simulate_continuous,
    simulate_static,
    summarize,
    vllm_benchmark,
    vllm_skip_reason,
)

PREFILL_MS = 10.0
STEP_MS = 2.0


def flat_model(step_ms: float = STEP_MS, prefill_ms: float = PREFILL_MS) -> StepLatencyModel:
    """Every step and every prefill costs the same, so latencies can be checked by hand."""
    return StepLatencyModel([1, 64], [1, 4096], [[step_ms, step_ms], [step_ms, step_ms]], [1, 4096],
                            [prefill_ms, prefill_ms])  # fmt: skip


def growing_model() -> StepLatencyModel:
    """Steps that cost more with batch and context, like the measured ones (sub-linear in batch)."""
    batches, contexts = [1, 2, 4, 8, 16], [16, 128, 512]
    step = [[2.0 + 0.25 * batch + 0.004 * context for context in contexts] for batch in batches]
    return StepLatencyModel(batches, contexts, step, [16, 128, 512], [4.0, 12.0, 40.0])


def varied_mix(rate: float | None, count: int = 120, seed: int = 0) -> list[Request]:
    return request_mix(
        count,
        rate,
        LengthDistribution(dist="uniform", low=16, high=256),
        LengthDistribution(dist="lognormal", median=40, sigma=0.8, low=2, high=250),
        seed=seed,
    )


# --- request mix ------------------------------------------------------------------------------------


def test_length_distributions_stay_in_bounds_and_name_missing_fields():
    rng = np.random.default_rng(0)
    uniform = LengthDistribution(dist="uniform", low=3, high=9).sample(rng, 2000)
    assert uniform.min() == 3 and uniform.max() == 9
    lognormal = LengthDistribution(dist="lognormal", median=50, sigma=2.0, low=5, high=80).sample(rng, 2000)
    assert lognormal.min() == 5 and lognormal.max() == 80  # clipped at both ends with a wide sigma
    assert set(LengthDistribution(dist="fixed", value=7).sample(rng, 10)) == {7}
    with pytest.raises(ValueError, match="value"):
        LengthDistribution(dist="fixed")
    with pytest.raises(ValueError, match="high"):
        LengthDistribution(dist="uniform", low=4)
    with pytest.raises(ValueError, match="median"):
        LengthDistribution(dist="lognormal", high=10)
    with pytest.raises(ValueError, match="below"):
        LengthDistribution(dist="uniform", low=10, high=4)


def test_request_mix_is_seeded_and_the_same_across_rates():
    slow, fast, again = varied_mix(2.0), varied_mix(20.0), varied_mix(2.0)
    assert slow == again
    assert [(r.prompt_tokens, r.output_tokens) for r in slow] == [(r.prompt_tokens, r.output_tokens) for r in fast]
    assert slow[-1].arrival_s == pytest.approx(10 * fast[-1].arrival_s)  # same draws, scaled
    assert varied_mix(2.0, seed=1) != slow
    assert {r.arrival_s for r in varied_mix(None)} == {0.0}


# --- simulation: hand-checkable cases ---------------------------------------------------------------


@pytest.mark.parametrize("outputs", [1, 2, 30])
def test_a_request_alone_takes_prefill_plus_one_step_per_further_token(outputs):
    request = [Request(0, 0.5, 100, outputs)]
    expected = PREFILL_MS + (outputs - 1) * STEP_MS
    continuous = summarize(simulate_continuous(request, flat_model(), max_batch=8), None)
    assert continuous.latency_p50_ms == pytest.approx(expected)
    assert continuous.ttft_p50_ms == pytest.approx(PREFILL_MS)
    # Static with room for more waits out its fill timeout first; with max_batch 1 it starts at once.
    waiting = summarize(simulate_static(request, flat_model(), max_batch=8, max_wait_s=0.005), None)
    assert waiting.latency_p50_ms == pytest.approx(5.0 + expected)
    assert waiting.ttft_p50_ms == pytest.approx(5.0 + PREFILL_MS)
    alone = summarize(simulate_static(request, flat_model(), max_batch=1, max_wait_s=0.005), None)
    assert alone.latency_p50_ms == pytest.approx(expected)


def test_two_requests_static_wait_for_the_longest_continuous_release_early():
    requests = [Request(0, 0.0, 50, 2), Request(1, 0.0, 50, 5)]
    static = simulate_static(requests, flat_model(), max_batch=2, max_wait_s=1.0)
    # Both prefills, then 4 steps for the longer output; the batch returns together.
    assert list(static.finish_s * 1000) == pytest.approx([2 * PREFILL_MS + 4 * STEP_MS] * 2)
    assert list(static.first_token_s * 1000) == pytest.approx([2 * PREFILL_MS] * 2)
    continuous = simulate_continuous(requests, flat_model(), max_batch=2)
    assert list(continuous.finish_s * 1000) == pytest.approx([2 * PREFILL_MS + STEP_MS, 2 * PREFILL_MS + 4 * STEP_MS])
    assert continuous.decode_batches == [2, 1, 1, 1]


def test_continuous_admits_a_late_arrival_into_the_running_batch():
    # The second request arrives while the first decodes: it joins at the next iteration, paying its prefill there.
    requests = [Request(0, 0.0, 50, 10), Request(1, 0.013, 50, 3)]
    trace = simulate_continuous(requests, flat_model(), max_batch=4)
    # Iterations: prefill(0) → 10 ms; steps at 12, 14 ms; at 14 ms request 1 has arrived → prefill + step → 26 ms.
    assert trace.first_token_s[1] * 1000 == pytest.approx(26.0)
    assert trace.decode_batches[:4] == [1, 1, 1, 2]
    static = simulate_static(requests, flat_model(), max_batch=4, max_wait_s=0.0)
    # Static: request 1 waits until request 0's batch is done (10 + 9 × 2 = 28 ms), then runs alone.
    assert static.first_token_s[1] * 1000 == pytest.approx(28.0 + PREFILL_MS)


def test_max_batch_bounds_both_policies():
    requests = varied_mix(None, count=40)
    for trace in (simulate_continuous(requests, growing_model(), max_batch=4),
                  simulate_static(requests, growing_model(), max_batch=4, max_wait_s=0.01)):  # fmt: skip
        assert max(trace.decode_batches) == 4
    # Offline, static batches are full groups of 4 in arrival order.
    static = simulate_static(requests, growing_model(), max_batch=4, max_wait_s=0.01)
    assert len(set(static.finish_s[:4])) == 1 and static.finish_s[4] > static.finish_s[3]


# --- simulation: properties -------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [None, 5.0, 40.0, 400.0])
@pytest.mark.parametrize("policy", ["static", "continuous"])
def test_every_request_completes_exactly_once_and_tokens_add_up(policy, rate):
    requests = varied_mix(rate)
    if policy == "static":
        trace = simulate_static(requests, growing_model(), max_batch=8, max_wait_s=0.02)
    else:
        trace = simulate_continuous(requests, growing_model(), max_batch=8)
    outputs = np.array([request.output_tokens for request in requests])
    arrivals = np.array([request.arrival_s for request in requests])
    assert list(trace.completions) == [1] * len(requests)
    assert list(trace.tokens) == list(outputs)
    assert np.all(trace.first_token_s >= arrivals) and np.all(trace.finish_s >= trace.first_token_s)
    result = summarize(trace, rate)
    assert result.completed == len(requests) and result.output_tokens == int(outputs.sum())
    assert result.throughput_tokens_per_s == pytest.approx(outputs.sum() / result.duration_s)


@pytest.mark.parametrize("rate", [None, 5.0, 40.0, 200.0])
def test_continuous_is_never_worse_than_static_in_mean_latency_for_varied_outputs(rate):
    requests = varied_mix(rate)
    static = summarize(simulate_static(requests, growing_model(), max_batch=8, max_wait_s=0.02), rate)
    continuous = summarize(simulate_continuous(requests, growing_model(), max_batch=8), rate)
    assert continuous.latency_mean_ms <= static.latency_mean_ms
    assert continuous.output_tokens == static.output_tokens


def test_simulation_is_deterministic_and_rejects_bad_input():
    options = ContinuousBatchingOptions(requests=60, rates_per_s=[10.0, 50.0], max_batch=8)
    measurement = fake_measurement()
    grid = resolve_grid(StepGrid(), max_batch=8, prompt_len=options.prompt_len, output_len=options.output_len)
    first = estimate_from_measurement(measurement, options, grid)
    assert first == estimate_from_measurement(measurement, options, grid)
    other = estimate_from_measurement(measurement, options.model_copy(update={"seed": 1}), grid)
    assert other.results != first.results
    with pytest.raises(ValueError, match="arrival order"):
        simulate_continuous([Request(0, 1.0, 5, 5), Request(1, 0.5, 5, 5)], flat_model(), max_batch=2)
    with pytest.raises(ValueError, match="max_batch"):
        simulate_static([Request(0, 0.0, 5, 5)], flat_model(), max_batch=0, max_wait_s=0.0)


# --- the step-latency model -------------------------------------------------------------------------


def fake_measurement() -> StepMeasurement:
    batches, contexts, prompts = [1, 2, 4, 8], [16, 200, 383], [16, 96, 176, 256]
    steps = [
        StepPoint(batch_size=b, context_len=c, step_ms=1.0 + 0.5 * b + 0.01 * c, samples_ms=[1.0 + 0.5 * b + 0.01 * c])
        for b in batches
        for c in contexts
    ]
    prefills = [PrefillPoint(prompt_tokens=p, prefill_ms=0.1 * p, samples_ms=[0.1 * p]) for p in prompts]
    return StepMeasurement(model="fake", runtime="none", device="none", threads=1, repeats=1, warmup=0,
                           steps=steps, prefills=prefills, seconds=0.0)  # fmt: skip


def test_interpolation_returns_the_measured_points_exactly_and_flags_clamping():
    measurement = fake_measurement()
    model = StepLatencyModel.from_measurement(measurement)
    for point in measurement.steps:
        seconds, clamped = model.step_s(point.batch_size, point.context_len)
        assert seconds * 1000 == pytest.approx(point.step_ms, abs=1e-12) and not clamped
    for point in measurement.prefills:
        assert model.prefill_s(point.prompt_tokens) == (pytest.approx(point.prefill_ms / 1000, abs=1e-15), False)
    # Between grid points: bilinear (exact for this bilinear surface).
    seconds, clamped = model.step_s(3, 108)
    assert seconds * 1000 == pytest.approx(1.0 + 0.5 * 3 + 0.01 * 108) and not clamped
    # Outside: the nearest edge, flagged.
    assert model.step_s(16, 383) == (pytest.approx(model.step_s(8, 383)[0]), True)
    assert model.step_s(4, 1000) == (pytest.approx(model.step_s(4, 383)[0]), True)
    assert model.prefill_s(1000) == (pytest.approx(0.0256), True)


def test_an_incomplete_grid_is_refused():
    measurement = fake_measurement()
    measurement.steps = measurement.steps[1:]
    with pytest.raises(ValueError, match="incomplete"):
        StepLatencyModel.from_measurement(measurement)


def test_the_default_grid_covers_the_request_mix():
    prompt = LengthDistribution(dist="uniform", low=16, high=256)
    output = LengthDistribution(dist="fixed", value=128)
    grid = resolve_grid(StepGrid(), max_batch=12, prompt_len=prompt, output_len=output)
    assert grid.batch_sizes == [1, 2, 4, 8, 12]
    assert grid.context_lens[0] == 16 and grid.context_lens[-1] == 256 + 128 - 1
    assert grid.prompt_lens[0] == 16 and grid.prompt_lens[-1] == 256
    explicit = resolve_grid(StepGrid(batch_sizes=[4, 1]), max_batch=12, prompt_len=prompt, output_len=output)
    assert explicit.batch_sizes == [1, 4]


def test_the_estimate_reports_clamped_lookups_and_its_figure_has_both_policies():
    options = ContinuousBatchingOptions(requests=40, rates_per_s=[20.0, 80.0], max_batch=16)  # grid stops at batch 8
    grid = StepGrid(batch_sizes=[1, 2, 4, 8], context_lens=[16, 200, 383], prompt_lens=[16, 96, 176, 256])
    report = estimate_from_measurement(fake_measurement(), options, grid)
    assert [(row.policy, row.offered_rate_per_s) for row in report.results] == [
        ("static", 20.0), ("continuous", 20.0), ("static", 80.0), ("continuous", 80.0),
    ]  # fmt: skip
    assert [row.policy for row in report.offline] == ["static", "continuous"]
    assert report.estimate and any("outside the measured grid" in note for note in report.notes)
    assert report.result("continuous", 80.0).clamped_lookups > 0
    figure = continuous_figure(report)
    assert [trace["name"] for trace in figure["data"]] == [
        "static batching (estimate)",
        "continuous batching (estimate)",
    ]
    assert figure["data"][1]["x"] == [row.throughput_tokens_per_s for row in report.results[1::2]]


# --- measurement on the tiny LM ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm():
    from tests.optimizers.llm_support import tiny_causal_lm

    return tiny_causal_lm()


def test_measurement_on_the_tiny_lm_gives_every_point(tiny_lm):
    from optimizers.serving.continuous import measure_step_latencies

    grid = StepGrid(batch_sizes=[1, 3], context_lens=[8, 40], prompt_lens=[4, 24], repeats=3, warmup=1)
    measured = measure_step_latencies(tiny_lm, grid)
    assert [(p.batch_size, p.context_len) for p in measured.steps] == [(1, 8), (3, 8), (1, 40), (3, 40)]
    assert [p.prompt_tokens for p in measured.prefills] == [4, 24]
    for point in [*measured.steps, *measured.prefills]:
        samples = point.samples_ms
        median = point.step_ms if isinstance(point, StepPoint) else point.prefill_ms
        assert len(samples) == 3 and min(samples) > 0 and median == statistics.median(samples)
    model = StepLatencyModel.from_measurement(measured)
    assert model.step_s(3, 40)[0] * 1000 == pytest.approx(measured.steps[3].step_ms)


def test_a_grid_beyond_the_models_positions_is_refused(tiny_lm):
    from optimizers.errors import PreflightError
    from optimizers.serving.continuous import measure_step_latencies

    with pytest.raises(PreflightError, match="positions"):
        measure_step_latencies(tiny_lm, StepGrid(batch_sizes=[1], context_lens=[4000], prompt_lens=[4]))


# --- the serving analysis ---------------------------------------------------------------------------


SMALL = {
    "max_batch": 4,
    "rates_per_s": [5.0, 50.0],
    "requests": 30,
    "prompt_len": {"dist": "uniform", "low": 8, "high": 32},
    "output_len": {"dist": "fixed", "value": 6},
    "measure": {"repeats": 3, "warmup": 1},
}


def only_continuous(extra: dict | None = None) -> dict:
    return {
        "model": "zoo:tiny-lm",
        "kv_cache": {"context_lens": [64], "probe_bytes": 1 << 20},
        "speculative": {"enabled": False},
        "kv_quant": {"enabled": False},
        "continuous_batching": {**SMALL, **(extra or {})},
    }


def test_serving_analysis_of_the_tiny_lm_estimates_both_policies(tmp_path, tiny_lm):
    from optimizers.serving.analysis import ServingReport, ServingSpec, run_serving_analysis

    events = []
    report = run_serving_analysis(ServingSpec.parse(only_continuous()), tmp_path, on_progress=events.append)
    continuous = report.continuous
    assert continuous is not None and continuous.estimate and continuous.vllm is None
    assert continuous.grid.batch_sizes == [1, 2, 4] and continuous.grid.context_lens[-1] == 32 + 6 - 1
    assert len(continuous.measurement.steps) == 3 * len(continuous.grid.context_lens)
    assert len(continuous.results) == 4 and all(row.completed == 30 for row in continuous.results)
    assert {row.output_tokens for row in continuous.results + continuous.offline} == {30 * 6}
    assert {"step latencies", "batching simulation"} <= {event.stage for event in events}
    assert ServingReport.model_validate_json((tmp_path / "serving.json").read_text()) == report


def test_vllm_option_skips_cleanly_without_vllm_or_cuda(tmp_path, tiny_lm):
    import torch

    from optimizers.serving.analysis import ServingSpec, run_serving_analysis

    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        pytest.skip("vLLM and CUDA are both here: the measurement would run")
    expected = "vLLM not installed" if importlib.util.find_spec("vllm") is None else "no CUDA"
    assert vllm_skip_reason(tiny_lm) == expected
    direct = vllm_benchmark(tiny_lm, varied_mix(None, count=3), max_batch=2, seed=0)
    assert (direct.status, direct.reason, direct.throughput_tokens_per_s) == ("skipped", expected, None)
    spec = ServingSpec.parse(only_continuous({"vllm_benchmark": True, "rates_per_s": [5.0]}))
    report = run_serving_analysis(spec, tmp_path)
    assert report.continuous.vllm.status == "skipped" and report.continuous.vllm.reason == expected
    assert len(report.continuous.results) == 2  # the estimate is still there
    assert json.loads((tmp_path / "serving.json").read_text())["continuous"]["vllm"]["reason"] == expected


def test_spec_validation_names_the_continuous_batching_problem():
    from optimizers.serving.analysis import ServingSpec

    with pytest.raises(RecipeError, match="output_len"):
        ServingSpec.parse(
            {"model": "zoo:tiny-lm", "continuous_batching": {"output_len": {"dist": "uniform", "low": 4}}}
        )
    with pytest.raises(RecipeError, match="rates"):
        ServingSpec.parse({"model": "zoo:tiny-lm", "continuous_batching": {"rates_per_s": [0]}})
    off = ServingSpec.parse({"model": "zoo:tiny-lm", "continuous_batching": {"enabled": False}})
    assert not off.continuous_batching.enabled


def test_a_mix_longer_than_the_models_positions_becomes_a_note(tmp_path, tiny_lm):
    from optimizers.serving.analysis import ServingSpec, run_serving_analysis

    spec = ServingSpec.parse(only_continuous({"prompt_len": {"dist": "fixed", "value": 600}, "output_len":
                                              {"dist": "fixed", "value": 100}}))  # fmt: skip
    report = run_serving_analysis(spec, tmp_path)
    assert report.continuous is None
    assert any("600 + 100 = 700 tokens" in note and "640 positions" in note for note in report.notes)
