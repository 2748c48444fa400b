"""Held-out evaluation data: deterministic splits, disjointness, JSONL uploads."""

from __future__ import annotations

import json

import pytest

from optimizers.errors import RecipeError
from optimizers.evaluation.datasets import TextDataset, check_disjoint, load_jsonl, load_text_dataset, pydoc_retrieval


def test_builtin_splits_are_disjoint_and_deterministic():
    evaluation, calibration, train = (pydoc_retrieval(s) for s in ("eval", "calibration", "train"))
    assert len(evaluation.pairs) >= 100 and calibration.pairs and train.pairs
    check_disjoint(calibration, evaluation)
    assert not evaluation.content_hashes() & train.content_hashes()
    assert pydoc_retrieval("eval").pairs == evaluation.pairs


def test_overlap_and_empty_calibration_are_refused():
    evaluation = pydoc_retrieval("eval", max_samples=5)
    with pytest.raises(RecipeError, match="shares 10 texts"):
        check_disjoint(evaluation, evaluation)
    with pytest.raises(RecipeError, match="empty"):
        check_disjoint(TextDataset(name="none", texts=[]), evaluation)


def test_jsonl_texts_and_pairs(tmp_path):
    path = tmp_path / "set.jsonl"
    rows = [{"text": "alpha"}, {"query": "q1", "passage": "p1"}, {"query": "q2", "passage": "p2"}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    dataset = load_text_dataset(str(path))
    assert dataset.texts == ["alpha", "q1", "q2", "p1", "p2"]
    assert len(dataset.pairs) == 2


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"nope": 1}\n')
    with pytest.raises(RecipeError, match="line 2"):
        load_jsonl(path)
    path.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(RecipeError, match="line 2 is not valid JSON"):
        load_jsonl(path)
    with pytest.raises(RecipeError, match="unknown demo dataset"):
        load_text_dataset("zoo:nothing")
