"""Helpers for the LLM quantization pass tests: the tiny causal LM and its quality metrics.

``tiny_causal_lm`` is ``zoo:tiny-lm`` (trained on first use, cached). ``QualityJudge``
scores candidates with the product's causal-lm evaluator (perplexity, KL divergence
against the baseline, top-1 agreement on the held-out split). ``build_random_llama``,
``eval_windows``, ``logits_of`` and ``lm_quality`` serve the GPU check, which must not
train the zoo model on the GPU machine.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from optimizers.artifacts import ModelArtifact
from optimizers.resolve import resolve_model

EVAL_WINDOWS = 12
EVAL_SEQ_LEN = 64


def tiny_causal_lm() -> ModelArtifact:
    return resolve_model("zoo:tiny-lm")


def build_random_llama(folder: Path) -> None:
    from pydoc_data.topics import topics

    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    lines = [line.strip() for key in sorted(topics) for line in topics[key].splitlines() if len(line.strip()) > 20]
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines[:4000]),
        model_writer=model_file,
        vocab_size=512,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(model_file.getvalue())
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
                "model_max_length": 512,
            }
        )
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder)


def eval_windows(baseline: ModelArtifact) -> list[list[int]]:
    """Held-out token windows from the built-in evaluation split (never used for calibration)."""
    from optimizers.passes.llm_common import builtin_texts, calibration_windows
    from optimizers.runtimes import load_tokenizer

    windows = calibration_windows(
        load_tokenizer(baseline), "eval", builtin_texts("eval"), samples=EVAL_WINDOWS, seq_len=EVAL_SEQ_LEN
    )
    return windows.input_ids


def logits_of(artifact: ModelArtifact, windows: list[list[int]]):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(artifact.folder, local_files_only=True).eval()
    with torch.inference_mode():
        return model(torch.tensor(windows)).logits.float()


def lm_quality(baseline_logits, candidate_logits, windows: list[list[int]]) -> dict[str, float]:
    """Perplexity of the candidate, KL(baseline ‖ candidate) per token, top-1 agreement."""
    import torch

    targets = torch.tensor(windows)[:, 1:]
    base = torch.log_softmax(baseline_logits[:, :-1], dim=-1)
    cand = torch.log_softmax(candidate_logits[:, :-1], dim=-1)
    nll = -cand.gather(-1, targets.unsqueeze(-1)).mean().item()
    kl = (base.exp() * (base - cand)).sum(-1).mean().item()
    agreement = (base.argmax(-1) == cand.argmax(-1)).float().mean().item()
    return {"perplexity": math.exp(nll), "kl_divergence": kl, "top1_agreement": agreement}


class QualityJudge:
    """The causal-lm evaluator with the baseline scored first; ``judge(artifact)`` → its metrics."""

    def __init__(self, baseline: ModelArtifact, *, windows: int = 16) -> None:
        from optimizers.evaluation.causal_lm import CausalLMEvaluator

        self.evaluator = CausalLMEvaluator(None, max_samples=windows)
        self.baseline = self.evaluator.evaluate(baseline)

    def __call__(self, artifact: ModelArtifact) -> dict[str, float]:
        return self.evaluator.evaluate(artifact)
