"""Recipe search: impossible chains skipped with a reason, budget honoured, Pareto and best marked."""

from __future__ import annotations

import itertools

import pytest

from optimizers.search import SearchSpace, enumerate_candidates, run_search

SPACE = """
model: zoo:minilm
budget_s: 3600
axes:
  - [none, {pass: onnx_export}]
  - [none, {pass: ort_quantize_dynamic, per_channel: true}]
benchmark: {batch_sizes: [1], seq_len: 16}
evaluation: {max_samples: 8}
"""


def test_enumeration_skips_impossible_chains_and_orders_cheapest_first():
    valid, skipped = enumerate_candidates(SearchSpace.from_yaml(SPACE), "hf")
    assert [[step["pass"] for step in steps] for steps in valid] == [
        ["onnx_export"],
        ["onnx_export", "ort_quantize_dynamic"],
    ]
    assert len(skipped) == 1 and "takes onnx models, but receives hf" in skipped[0].reason


@pytest.mark.slow
def test_search_stops_at_the_budget_and_keeps_every_candidate(tmp_path):
    ticks = itertools.chain([0.0, 0.0], itertools.repeat(1e9))  # start, first check; then the budget is gone
    report = run_search(SearchSpace.from_yaml(SPACE), tmp_path, quick=True, clock=lambda: next(ticks))
    statuses = [(c.status, [s["pass"] for s in c.steps]) for c in report.candidates]
    assert statuses == [
        ("done", ["onnx_export"]),
        ("not_run", ["onnx_export", "ort_quantize_dynamic"]),
        ("skipped", ["ort_quantize_dynamic"]),
    ]
    done = report.candidates[0]
    assert done.gate_outcome == "pass" and done.on_pareto_front  # FP32 export: no quality loss
    assert report.best_passing == 0
    assert (tmp_path / "search.json").is_file()
