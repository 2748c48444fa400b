"""The timing loop's contract (iteration counts, phases) and the statistics; no timing thresholds."""

from __future__ import annotations

from optimizers.benchmark.harness import Timings, summarize, time_loop, window_spread
from optimizers.recipe import BenchmarkSettings


def test_loop_runs_warmup_then_at_least_min_iterations():
    calls = {"pre": 0, "model": 0, "post": 0}

    def count(name):
        def inner(*args):
            calls[name] += 1
            return args[0] if args else None

        return inner

    settings = BenchmarkSettings(warmup=3, min_iterations=7, min_seconds=0.0)
    timings = time_loop(count("pre"), count("model"), count("post"), settings)
    assert len(timings.model) == len(timings.preprocess) == len(timings.postprocess) == 7
    assert calls == {"pre": 10, "model": 10, "post": 10}


def test_loop_keeps_going_until_min_seconds():
    settings = BenchmarkSettings(warmup=0, min_iterations=1, min_seconds=0.05)
    timings = time_loop(lambda: None, lambda _: None, lambda *_: None, settings)
    assert sum(timings.model) + sum(timings.preprocess) + sum(timings.postprocess) <= 1.0
    assert len(timings.model) > 1


def test_summary_percentiles_are_ordered_and_throughput_counts_samples():
    latencies = [0.010 + 0.001 * (i % 10) for i in range(100)]
    stats = summarize(
        Timings(model=latencies, preprocess=[0.001] * 100, postprocess=[0.0005] * 100), batch_size=8, seq_len=64
    )
    assert stats.p50_ms <= stats.p90_ms <= stats.p95_ms <= stats.p99_ms
    assert abs(stats.throughput_per_s - 8 * 100 / sum(latencies)) < 1e-6
    assert stats.preprocess_p50_ms == 1.0 and stats.iterations == 100


def test_stability_flag_catches_a_drifting_run():
    steady = [0.010] * 30
    drifting = [0.010] * 10 + [0.010] * 10 + [0.014] * 10
    assert window_spread(steady) == 0.0
    assert window_spread(drifting) > 0.10
    assert not summarize(
        Timings(model=drifting, preprocess=[0.0] * 30, postprocess=[0.0] * 30), batch_size=1, seq_len=8
    ).stable


def test_quick_settings_shorten_but_keep_warmup():
    quick = BenchmarkSettings().quick()
    assert quick.warmup >= 1 and quick.min_iterations >= 5 and quick.min_seconds < 1
