"""``zoo:tiny-lm``: corpus splits, tokenizer, the trained model, caching and determinism."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil

import pytest

from optimizers.errors import RecipeError
from optimizers.hashing import sha256_file
from optimizers.zoo import tiny_lm as zoo_lm


def test_splits_are_disjoint_by_content_hash_and_stable():
    splits = zoo_lm.corpus_splits()
    assert set(splits) == {"train", "calibration", "eval"}
    hashes = {name: {hashlib.sha256(text.encode()).hexdigest() for text in texts} for name, texts in splits.items()}
    assert not hashes["train"] & hashes["eval"]
    assert not hashes["train"] & hashes["calibration"]
    assert not hashes["calibration"] & hashes["eval"]
    for name, texts in splits.items():
        assert all(zoo_lm.split_of(text) == name for text in texts)
    assert len(splits["train"]) > 5 * len(splits["eval"]) > 0
    assert zoo_lm.corpus_splits() == splits  # cached copy reads back identically


def test_corpus_holds_pydoc_topics_and_stdlib_docstrings():
    texts = [text for split in zoo_lm.corpus_splits().values() for text in split]
    joined = "\n".join(texts)
    assert 'The "for" statement is used to iterate' in joined  # pydoc_data.topics
    assert "Return the number of items in a deque" in joined or "Shallow copy operation" in joined  # docstrings
    assert sum(len(text) for text in texts) > 1_000_000


def test_tokenizer_is_sentencepiece_bpe_with_byte_fallback_and_hf_agrees(tiny_lm):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    processor = spm.SentencePieceProcessor(model_file=str(tiny_lm.folder / "tokenizer.model"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm.folder, local_files_only=True)
    assert processor.vocab_size() == len(tokenizer) == 2048
    text = "def f(x):\n    return x ** 2  # ∑ 4 ✓"
    assert tokenizer(text)["input_ids"] == [zoo_lm.BOS_ID, *processor.encode(text)]
    assert "<0x0A>" in tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])  # newline via byte fallback
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_tiny_lm_is_a_trained_llama_whose_rows_suit_k_quants(tiny_lm):
    import torch
    from transformers import AutoModelForCausalLM

    config = json.loads((tiny_lm.folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert tiny_lm.task == "causal-lm" and tiny_lm.format == "hf"
    for key in ("hidden_size", "intermediate_size", "vocab_size"):
        assert config[key] % 256 == 0, key
    record = json.loads((tiny_lm.folder / "tiny_lm.json").read_text())
    # Trained: far below the loss of a uniform guess over 2048 tokens (ln 2048 ≈ 7.6).
    assert record["eval_loss"] < 5.0, record
    assert record["split_documents"]["eval"] > 100
    model = AutoModelForCausalLM.from_pretrained(tiny_lm.folder, local_files_only=True).eval()
    with torch.inference_mode():
        logits = model(torch.tensor([[1, 450, 260, 300]])).logits
    assert logits.shape == (1, 4, 2048) and torch.isfinite(logits).all()


def test_draft_model_shares_the_tokenizer_and_is_smaller(tiny_lm):
    from optimizers.resolve import resolve_model

    draft = resolve_model("zoo:tiny-lm-draft")
    assert sha256_file(draft.folder / "tokenizer.model") == sha256_file(tiny_lm.folder / "tokenizer.model")
    assert draft.size_bytes < tiny_lm.size_bytes / 3
    assert draft.task == "causal-lm"


def test_a_built_model_is_reused_not_retrained(tiny_lm):
    weights = tiny_lm.folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    progress: list[str] = []
    assert zoo_lm.tiny_lm_folder("tiny-lm", progress=lambda fraction, message: progress.append(message)) == (
        tiny_lm.folder
    )
    assert weights.stat().st_mtime_ns == before and progress == []
    assert tiny_lm.folder.name == f"tiny-lm-{zoo_lm.cache_key(zoo_lm.SPECS['tiny-lm'])}"


def test_an_unbuilt_model_is_not_trained_when_building_is_not_allowed(tmp_path, monkeypatch):
    from optimizers.zoo import zoo_model_folder

    monkeypatch.setenv("INFEROPT_ZOO_DIR", str(tmp_path))
    with pytest.raises(RecipeError, match="not built yet.*setup_demo"):
        zoo_model_folder("zoo:tiny-lm", build=False)
    assert not any(tmp_path.glob("tiny-lm-*"))


@pytest.mark.slow
def test_same_seed_gives_the_same_weights_and_progress_is_reported(tiny_lm, monkeypatch):
    # A very small spec, built twice into the same cache (corpus and tokenizer reused).
    spec = dataclasses.replace(
        zoo_lm.SPECS["tiny-lm-draft"], key="determinism-check", hidden_size=256, num_layers=1, steps=3, warmup_steps=1
    )
    monkeypatch.setitem(zoo_lm.SPECS, "determinism-check", spec)
    hashes, runs = [], []
    for _ in range(2):
        folder = zoo_lm.model_dir("determinism-check")
        fractions: list[float] = []
        try:
            zoo_lm.build_tiny_lm(
                "determinism-check", progress=lambda fraction, message, seen=fractions: seen.append(fraction)
            )
            hashes.append(sha256_file(folder / "model.safetensors"))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            (folder.parent / f"{folder.name}.build.json").unlink(missing_ok=True)
        runs.append(fractions)
    assert hashes[0] == hashes[1]
    for fractions in runs:
        assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_sentencepiece_training_is_deterministic(tmp_path):
    train = zoo_lm.corpus_splits()["train"][:200]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        zoo_lm._train_sentencepiece(train, 512, tmp_path / name)
    assert (tmp_path / "a" / "tokenizer.model").read_bytes() == (tmp_path / "b" / "tokenizer.model").read_bytes()


def test_learning_rate_warms_up_then_decays():
    spec = zoo_lm.SPECS["tiny-lm"]
    rates = [zoo_lm._learning_rate(spec, step) for step in range(spec.steps)]
    assert rates[0] < rates[spec.warmup_steps - 1] == pytest.approx(spec.learning_rate)
    assert rates[-1] == pytest.approx(0.1 * spec.learning_rate, rel=0.05)
    assert all(math.isfinite(rate) and rate > 0 for rate in rates)
