"""``distill`` on the digits CNN and the real MiniLM: the student is smaller and learns from its teacher."""

from __future__ import annotations

import json

import pytest

from optimizers.errors import PreflightError
from optimizers.passes import get_pass
from optimizers.passes.base import PassContext
from tests.optimizers.conftest import run_pass

# ---------------------------------------------------------------------------- digits CNN


def _eval_accuracy(artifact) -> float:
    from optimizers.evaluation.images import digits_split
    from optimizers.models import load_torch_module
    from optimizers.models.training import accuracy

    images, labels = digits_split("eval")
    return accuracy(load_torch_module(artifact), images, labels)


def test_distilled_cnn_student_beats_the_same_student_trained_without_the_teacher(digits_cnn, tmp_path):
    # Same architecture, steps, learning rate and seed; the only difference is the teacher:
    # its strongest filters as the start and its soft labels in the loss, versus a random start on hard labels.
    common = {"steps": 40, "seed": 0, "learning_rate": 1e-2}
    distilled = run_pass("distill", digits_cnn, tmp_path / "kd", **common)
    alone = run_pass("distill", digits_cnn, tmp_path / "ce", init="random", alpha=0.0, **common)
    assert json.loads((distilled.folder / "config.json").read_text())["channels"] == [8, 16]
    assert _eval_accuracy(distilled) > _eval_accuracy(alone) + 0.02


def test_cnn_student_is_smaller_and_the_details_carry_the_curve(digits_cnn, tmp_path):
    messages: list[str] = []
    technique = get_pass("distill")
    config = technique.parse_config({"steps": 30})
    technique.preflight(digits_cnn, config)
    student = technique.run(
        digits_cnn, config, PassContext(work_dir=tmp_path / "s", progress=lambda f, m: messages.append(m))
    )
    details = student.metadata["details"]
    assert details["parameters_student"] < details["parameters_teacher"] / 3
    assert student.size_bytes < digits_cnn.size_bytes
    curve = details["training_curve"]
    assert [point["step"] for point in curve] == list(range(1, 31))
    assert all({"step", "loss"} <= set(point) for point in curve)
    assert curve[-1]["loss"] < curve[0]["loss"]
    assert "step 30 of 30, loss" in messages[-2]
    assert 0.0 < details["calibration_accuracy"] <= 1.0


def test_progressive_cnn_chain_reports_each_link(digits_cnn, tmp_path):
    student = run_pass("distill", digits_cnn, tmp_path / "p", progressive=True, steps=20)
    links = student.metadata["details"]["links"]
    assert [(link["teacher"], link["student"]) for link in links] == [
        ("channels [16, 32], hidden 64", "channels [12, 24], hidden 48"),
        ("channels [12, 24], hidden 48", "channels [8, 16], hidden 32"),
    ]
    assert links[0]["parameters"] > links[1]["parameters"]
    assert all(link["steps"] == 20 and "calibration_accuracy" in link and link["final_loss"] for link in links)
    assert {point["link"] for point in student.metadata["details"]["training_curve"]} == {1, 2}


def test_a_cnn_student_not_smaller_than_its_teacher_is_refused(digits_cnn, tmp_path):
    with pytest.raises(PreflightError, match="student must be smaller than its teacher"):
        run_pass("distill", digits_cnn, tmp_path / "big", student_channels=[16, 32], student_hidden=64)
    with pytest.raises(PreflightError, match="conv 1: 48 > 32"):
        run_pass("distill", digits_cnn, tmp_path / "wide", student_channels=[4, 48], student_hidden=8)
    assert not (tmp_path / "big").exists() and not (tmp_path / "wide").exists()


# ---------------------------------------------------------------------------- MiniLM


def test_minilm_student_with_more_layers_than_the_teacher_is_refused(minilm, tmp_path):
    with pytest.raises(PreflightError, match="student_layers=6 but the teacher has 6 layers"):
        run_pass("distill", minilm, tmp_path / "s", student_layers=6)


def test_progressive_chain_without_room_between_is_refused(minilm, tmp_path):
    with pytest.raises(PreflightError, match="shrink at every link"):
        run_pass("distill", minilm, tmp_path / "s", student_layers=5, progressive=True)


def test_default_student_layers_keep_the_first_and_last_teacher_layers():
    from optimizers.passes.distill import default_teacher_layers

    assert default_teacher_layers(6, 3) == [0, 3, 5]
    assert default_teacher_layers(6, 4) == [0, 2, 3, 5]
    assert default_teacher_layers(6, 1) == [5]


def test_distillation_texts_come_from_the_train_split_only():
    import hashlib

    from optimizers.evaluation.datasets import pydoc_retrieval
    from optimizers.passes.distill import distillation_texts

    texts = distillation_texts()
    held_out = pydoc_retrieval("eval").content_hashes() | pydoc_retrieval("calibration").content_hashes()
    assert len(texts) > 400
    assert not {hashlib.sha256(text.encode()).hexdigest() for text in texts} & held_out


def test_distillation_texts_are_disjoint_from_eval_and_calibration_by_content_hash():
    import hashlib

    from optimizers.evaluation.datasets import _SENTENCE_END, TextDataset, check_disjoint, pydoc_retrieval
    from optimizers.passes.distill import distillation_texts

    texts = distillation_texts()
    # Standard-library docstrings and the pydoc topics beside the retrieval train split's 266 texts.
    assert len(texts) > 20 * len(pydoc_retrieval("train").texts)
    assert distillation_texts() == texts == sorted(texts)
    training = TextDataset(name="distill-train", texts=texts)
    for split in ("eval", "calibration"):
        held_out = pydoc_retrieval(split)
        check_disjoint(training, held_out)  # RecipeError on any shared content hash
        # Nor any single sentence of a held-out query or passage (the paragraphs they were cut from are left out).
        sentences = {
            hashlib.sha256(s.encode()).hexdigest() for text in held_out.texts for s in _SENTENCE_END.split(text)
        }
        assert not training.content_hashes() & sentences


@pytest.fixture(scope="module")
def minilm_3_layers(minilm, tmp_path_factory):
    # A few steps only: the test checks the mechanism; the defaults' quality is measured in benchmarks.
    return run_pass("distill", minilm, tmp_path_factory.mktemp("kd") / "s", steps=6, batch_size=16, eval_samples=16)


def test_distilled_minilm_student_is_a_loadable_3_layer_bert_closer_to_the_teacher(
    minilm, minilm_3_layers, metrics_of, tmp_path
):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(minilm_3_layers.folder, local_files_only=True)
    assert model.config.num_hidden_layers == 3
    assert (minilm_3_layers.folder / "tokenizer.json").is_file()
    details = minilm_3_layers.metadata["details"]
    assert details["parameters_student"] < details["parameters_teacher"]
    assert minilm_3_layers.size_bytes < 0.85 * minilm.size_bytes
    # The same 3-layer student straight from the teacher's layers, not trained (steps 0), on held-out text.
    untrained = run_pass("distill", minilm, tmp_path / "init", steps=0, eval_samples=16)
    assert metrics_of(minilm_3_layers)["cosine"] > metrics_of(untrained)["cosine"] + 0.02


def test_minilm_training_curve_and_progress_are_recorded(minilm_3_layers):
    curve = minilm_3_layers.metadata["details"]["training_curve"]
    assert [point["step"] for point in curve] == [1, 2, 3, 4, 5, 6]
    assert minilm_3_layers.metadata["details"]["links"][0]["student"] == "3 layers"


def test_progressive_minilm_chain_reports_each_link(minilm, tmp_path):
    student = run_pass("distill", minilm, tmp_path / "p", progressive=True, steps=2, batch_size=8, eval_samples=8)
    links = student.metadata["details"]["links"]
    assert [(link["teacher"], link["student"]) for link in links] == [
        ("6 layers", "4 layers"),
        ("4 layers", "3 layers"),
    ]
    assert all("calibration_cosine" in link and link["steps"] == 2 for link in links)
    assert [point["step"] for point in student.metadata["details"]["training_curve"]] == [1, 2, 3, 4]
