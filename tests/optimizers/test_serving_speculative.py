"""Speculative decoding on the tiny LM: outputs equal the target's greedy output, acceptance counted in [0, 1],
flags on fixed inputs, and a draft with another tokenizer refused. No timing thresholds."""

from __future__ import annotations

import pytest

from optimizers.errors import PreflightError, RecipeError
from optimizers.resolve import resolve_model
from optimizers.serving.analysis import ServingSpec
from optimizers.serving.speculative import (
    GUIDANCE,
    TRAINED_HEADS_NOTE,
    SpeculativeOptions,
    check_same_tokenizer,
    counting_candidates,
    generate_once,
    heldout_prompts,
    load_causal_lm,
    speculative_decoding,
    speculative_flags,
)
from tests.optimizers.llm_support import build_random_llama, tiny_causal_lm


@pytest.fixture(scope="module")
def target():
    return tiny_causal_lm()


@pytest.fixture(scope="module")
def draft_folder():
    return resolve_model("zoo:tiny-lm-draft").folder


def test_flags_on_fixed_inputs():
    assert speculative_flags(0.75, 1.5) == []
    assert speculative_flags(0.6, 1.2) == []  # the thresholds themselves pass
    low_acceptance = speculative_flags(0.5, 1.5)
    assert len(low_acceptance) == 1 and "acceptance 50%" in low_acceptance[0] and GUIDANCE in low_acceptance[0]
    slow = speculative_flags(0.9, 1.1)
    assert len(slow) == 1 and "speedup 1.10x" in slow[0] and GUIDANCE in slow[0]
    assert len(speculative_flags(0.2, 0.8)) == 2


def test_spec_options_validate():
    spec = ServingSpec.parse({"model": "zoo:tiny-lm", "speculative": {"max_new_tokens": 16, "prompts": ["def f():"]}})
    assert spec.speculative.prompts == ["def f():"] and spec.speculative.draft == "zoo:tiny-lm-draft"
    with pytest.raises(RecipeError, match="max_new_tokens"):
        ServingSpec.parse({"model": "zoo:tiny-lm", "speculative": {"max_new_tokens": 0}})
    with pytest.raises(RecipeError, match="speculative"):
        ServingSpec.parse({"model": "zoo:tiny-lm", "speculative": {"medusa": True}})


def _manual_greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy decoding the slow way: the whole sequence through the model at every step, no cache."""
    import torch

    ids = list(prompt)
    with torch.inference_mode():
        for _ in range(new_tokens):
            next_id = int(model(torch.tensor([ids]), use_cache=False).logits[0, -1].argmax())
            ids.append(next_id)
            if next_id == model.config.eos_token_id:
                break
    return ids[len(prompt) :]


def test_both_methods_reproduce_plain_greedy_decoding(target, draft_folder):
    model, tokenizer = load_causal_lm(target.folder)
    draft, _ = load_causal_lm(draft_folder)
    options = SpeculativeOptions(max_new_tokens=12, prompt_tokens=24)
    prompt = heldout_prompts(tokenizer, 1, options.prompt_tokens)[0]
    assert len(prompt) == 24 and prompt[0] == tokenizer.bos_token_id
    expected = _manual_greedy(model, prompt, options.max_new_tokens)
    plain, _, plain_counter = generate_once(model, prompt, "plain", options)
    assert plain == expected and plain_counter.proposed == 0  # nothing speculative in a plain run
    for method, kwargs in [("draft_model", {"draft": draft}), ("prompt_lookup", {})]:
        tokens, seconds, counter = generate_once(model, prompt, method, options, **kwargs)
        assert tokens == expected, method
        assert seconds > 0 and 0 <= counter.accepted <= counter.proposed
        assert counter.rounds >= 1
    assert "_get_candidate_generator" not in vars(model)  # the counting wrapper is gone after the call


def test_acceptance_is_counted_inside_the_assisted_generation_loop(target, draft_folder):
    model, tokenizer = load_causal_lm(target.folder)
    draft, _ = load_causal_lm(draft_folder)
    options = SpeculativeOptions(max_new_tokens=16, prompt_tokens=24)
    prompt = heldout_prompts(tokenizer, 1, 24)[0]
    with counting_candidates(model) as counter:
        first, _, _ = generate_once(model, prompt, "draft_model", options, draft)
    # generate_once nests its own counter; the outer one still sees the call.
    assert counter.proposed > 0 and 0 <= counter.accepted <= counter.proposed
    # Every target pass yields its accepted draft tokens plus one of its own.
    assert counter.accepted + counter.rounds == len(first)


def test_report_over_held_out_prompts(target, draft_folder):
    options = SpeculativeOptions(prompts=2, prompt_tokens=24, max_new_tokens=12)
    logs: list[str] = []
    report = speculative_decoding(target, options, draft_folder=draft_folder, on_log=logs.append)
    assert [method.method for method in report.methods] == ["draft_model", "prompt_lookup"]
    assert report.prompts == 2 and report.refused == {} and report.draft == "zoo:tiny-lm-draft"
    assert report.baseline_new_tokens > 0 and report.baseline_tokens_per_s > 0
    for method in report.methods:
        assert method.identical_outputs and method.prompts_identical == 2, method.label
        assert 0.0 <= method.acceptance_rate <= 1.0
        assert method.accepted_tokens <= method.proposed_tokens
        assert method.new_tokens == report.baseline_new_tokens  # same outputs, same lengths
        assert method.tokens_per_s > 0 and method.speedup > 0
        assert method.flags == speculative_flags(method.acceptance_rate, method.speedup)
    draft_method = report.methods[0]
    assert draft_method.acceptance_rate == pytest.approx(draft_method.accepted_tokens / draft_method.proposed_tokens)
    assert TRAINED_HEADS_NOTE in report.notes and "Medusa" in TRAINED_HEADS_NOTE
    assert logs[-1] == "speculative: prompt 2/2 done"


def test_a_draft_with_another_tokenizer_is_refused(target, tmp_path):
    other = tmp_path / "other-llama"
    build_random_llama(other)  # its own SentencePiece model, vocabulary 512
    model, tokenizer = load_causal_lm(target.folder)
    draft, draft_tokenizer = load_causal_lm(other)
    with pytest.raises(PreflightError, match="tokenizer differs from the target's"):
        check_same_tokenizer(tokenizer, draft_tokenizer, model.config, draft.config)
    check_same_tokenizer(tokenizer, tokenizer, model.config, model.config)  # the same one passes

    options = SpeculativeOptions(prompts=1, prompt_tokens=16, max_new_tokens=4)
    report = speculative_decoding(target, options, draft_folder=other)
    assert "tokenizer differs" in report.refused["draft_model"] and report.draft is None
    assert [method.method for method in report.methods] == ["prompt_lookup"]  # still measured
    with pytest.raises(PreflightError, match="no method to run"):
        speculative_decoding(target, options.model_copy(update={"prompt_lookup": False}), draft_folder=other)


def test_bad_prompts_are_refused(target, draft_folder):
    with pytest.raises(PreflightError, match="non-empty"):
        speculative_decoding(target, SpeculativeOptions(prompts=["  "], draft_model=False), draft_folder=None)
    with pytest.raises(PreflightError, match="between 1 and 64"):
        speculative_decoding(target, SpeculativeOptions(prompts=0, draft_model=False), draft_folder=None)
