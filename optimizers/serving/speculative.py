"""Speculative decoding for a causal LM: a draft model (assisted generation) and prompt lookup, measured.

``speculative_decoding(target, options)`` → ``SpeculativeReport``. For each
held-out prompt (or the prompts given) it runs, interleaved, the target's plain
greedy ``generate`` (the reference), transformers' assisted generation
(``generate(..., assistant_model=draft)``) and prompt-lookup decoding
(``generate(..., prompt_lookup_num_tokens=k)``, no draft). Per method it
reports tokens/s against the plain run, the speedup, whether every output is
token-for-token the plain greedy output, and the acceptance rate.

Acceptance is counted inside transformers' own loop, not re-derived: the
candidate generator that ``generate`` builds (``_get_candidate_generator``) is
wrapped for the duration of the call so that ``get_candidates`` adds the number
of draft tokens it proposed and ``update_candidate_strategy`` adds the number
the target accepted (``num_matches``, the value the assisted-decoding loop
itself uses to keep tokens and crop the KV cache). acceptance = accepted ÷
proposed, in [0, 1]. Rounds in which prompt lookup finds no n-gram propose
nothing and count nothing.

The draft must share the target's tokenizer: ``check_same_tokenizer`` compares
the two vocabularies (token → id) and the models' vocabulary sizes and raises
``PreflightError`` naming the difference otherwise. (transformers can pair
different tokenizers through universal assisted decoding, but that re-tokenizes
text and is not what this analysis measures.)

``main`` is a child-process entry point (``python -m optimizers.serving.speculative
IN.json OUT.json``) so benchmarks can time each method in its own process.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError

#: Below either threshold a method is flagged (seed guidance for speculative decoding).
MIN_ACCEPTANCE = 0.6
MIN_SPEEDUP = 1.2
GUIDANCE = "a draft must be much faster than the target with acceptance above ~70%"
TRAINED_HEADS_NOTE = (
    "Medusa and EAGLE speculate with extra decoding heads trained on the target model; "
    "they need those trained heads and are not offered yet."
)

Method = Literal["draft_model", "prompt_lookup"]


class SpeculativeOptions(BaseModel):
    """What the serving analysis runs for a causal LM (``speculative:`` in a serving spec)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Run the draft-model method, with ``draft`` (``zoo:…`` or a local folder; the web app takes ``zoo:`` only).
    draft_model: bool = True
    draft: str = Field("zoo:tiny-lm-draft", min_length=1, max_length=500)
    prompt_lookup: bool = True
    #: Held-out prompts (how many, taken from the evaluation split) or the prompt texts themselves.
    prompts: int | list[str] = 4
    #: Tokens of held-out text per prompt (ignored for given texts).
    prompt_tokens: int = Field(48, ge=4, le=4096)
    max_new_tokens: int = Field(48, ge=1, le=4096)
    #: Draft tokens proposed per round at the start (transformers' heuristic schedule adapts it per call).
    num_assistant_tokens: int = Field(5, ge=1, le=64)
    prompt_lookup_num_tokens: int = Field(10, ge=1, le=64)
    max_matching_ngram_size: int = Field(2, ge=1, le=16)


class MethodResult(BaseModel):
    """One speculative method over every prompt, against the plain greedy run of the same prompts."""

    method: Method
    label: str
    draft: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    proposed_tokens: int
    accepted_tokens: int
    #: accepted ÷ proposed (0 when nothing was proposed).
    acceptance_rate: float = Field(ge=0.0, le=1.0)
    #: Target forward passes (one per verification round); plain greedy needs one per new token.
    target_forward_passes: int
    new_tokens: int
    seconds: float
    tokens_per_s: float
    #: tokens/s ÷ the plain greedy tokens/s measured in the same interleaved run.
    speedup: float
    prompts: int
    prompts_identical: int
    #: Every output equal, token by token, to the target's plain greedy output.
    identical_outputs: bool
    flags: list[str] = Field(default_factory=list)


class SpeculativeReport(BaseModel):
    """What ``speculative_decoding`` measured; ``serving.json``'s ``speculative`` part."""

    target: str
    draft: str | None = None
    prompts: int
    prompt_source: str
    max_new_tokens: int
    device: str = "cpu"
    threads: int
    baseline_new_tokens: int
    baseline_seconds: float
    baseline_tokens_per_s: float
    methods: list[MethodResult] = Field(default_factory=list)
    #: Methods that could not run here, with the reason (e.g. a draft with another tokenizer).
    refused: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def speculative_flags(acceptance_rate: float, speedup: float) -> list[str]:
    """Warnings for one method: acceptance below ``MIN_ACCEPTANCE`` or speedup below ``MIN_SPEEDUP``."""
    flags = []
    if acceptance_rate < MIN_ACCEPTANCE:
        flags.append(f"acceptance {acceptance_rate:.0%} is below {MIN_ACCEPTANCE:.0%}: {GUIDANCE}")
    if speedup < MIN_SPEEDUP:
        flags.append(f"speedup {speedup:.2f}x is below {MIN_SPEEDUP:.1f}x: {GUIDANCE}")
    return flags


# --------------------------------------------------------------------------- tokenizer check


def check_same_tokenizer(target_tokenizer: Any, draft_tokenizer: Any, target_config: Any, draft_config: Any) -> None:
    """``PreflightError`` unless both tokenizers map every token to the same id and the models agree on vocab size."""
    target_vocab, draft_vocab = target_tokenizer.get_vocab(), draft_tokenizer.get_vocab()
    if target_vocab != draft_vocab:
        only_target = sorted(set(target_vocab) - set(draft_vocab))
        only_draft = sorted(set(draft_vocab) - set(target_vocab))
        moved = sorted(
            token for token in set(target_vocab) & set(draft_vocab) if target_vocab[token] != draft_vocab[token]
        )
        detail = [f"{len(target_vocab)} vs {len(draft_vocab)} tokens"]
        if only_target:
            detail.append(f"{len(only_target)} only in the target's (e.g. {only_target[0]!r})")
        if only_draft:
            detail.append(f"{len(only_draft)} only in the draft's (e.g. {only_draft[0]!r})")
        if moved:
            detail.append(f"{len(moved)} with another id (e.g. {moved[0]!r})")
        raise PreflightError(
            "the draft model's tokenizer differs from the target's (" + "; ".join(detail) + "): "
            "speculative decoding here needs a draft trained with the target's tokenizer"
        )
    target_size = target_config.get_text_config().vocab_size
    draft_size = draft_config.get_text_config().vocab_size
    if target_size != draft_size:
        raise PreflightError(
            f"the draft model's vocabulary has {draft_size} rows and the target's {target_size}: "
            "their logits do not line up, so the draft cannot propose the target's tokens"
        )


# --------------------------------------------------------------------------- acceptance counting


@dataclass
class DraftCounter:
    proposed: int = 0
    accepted: int = 0
    rounds: int = 0


@contextlib.contextmanager
def counting_candidates(model: Any) -> Iterator[DraftCounter]:
    """Count proposed and accepted draft tokens of every ``generate`` call on ``model`` inside the block.

    Wraps the candidate generator that transformers' assisted-decoding loop builds
    (the same object, its methods shadowed on the instance), so nothing about the
    decoding changes; on exit the instance attribute is removed (or an enclosing block's restored).
    """
    counter = DraftCounter()
    shadowed = vars(model).get("_get_candidate_generator")  # an enclosing counter's wrapper, if any
    build = model._get_candidate_generator

    def wrapped_build(*args: Any, **kwargs: Any) -> Any:
        generator = build(*args, **kwargs)
        get_candidates, update = generator.get_candidates, generator.update_candidate_strategy

        def counted_get_candidates(input_ids: Any, **more: Any) -> Any:
            candidate_ids, candidate_logits = get_candidates(input_ids, **more)
            counter.proposed += int(candidate_ids.shape[1] - input_ids.shape[1])
            counter.rounds += 1
            return candidate_ids, candidate_logits

        def counted_update(input_ids: Any, scores: Any, num_matches: Any) -> Any:
            counter.accepted += max(0, int(num_matches))
            return update(input_ids, scores, num_matches)

        generator.get_candidates = counted_get_candidates
        generator.update_candidate_strategy = counted_update
        return generator

    model._get_candidate_generator = wrapped_build
    try:
        yield counter
    finally:
        if shadowed is None:
            del model._get_candidate_generator
        else:
            model._get_candidate_generator = shadowed


# --------------------------------------------------------------------------- prompts and generation


def load_causal_lm(folder: Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a local Hugging Face folder; never remote code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    return model, tokenizer


def heldout_prompts(tokenizer: Any, count: int, prompt_tokens: int) -> list[list[int]]:
    """``count`` prompts of ``prompt_tokens`` tokens (BOS first): the first long-enough documents of the eval split."""
    from optimizers.passes.llm_common import builtin_texts

    prompts = []
    for text in builtin_texts("eval"):
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) >= prompt_tokens:
            head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
            prompts.append(head + ids[: prompt_tokens - len(head)])
        if len(prompts) == count:
            return prompts
    raise PreflightError(f"the evaluation split has fewer than {count} documents of {prompt_tokens} tokens")


def _prompt_ids(tokenizer: Any, options: SpeculativeOptions) -> tuple[list[list[int]], str]:
    if isinstance(options.prompts, list):
        if not options.prompts or not all(text.strip() for text in options.prompts):
            raise PreflightError("speculative: prompts must be non-empty texts")
        prompts = [tokenizer(text)["input_ids"] for text in options.prompts]
        return prompts, f"{len(prompts)} given prompts"
    count = options.prompts
    if not 1 <= count <= 64:
        raise PreflightError("speculative: prompts must be between 1 and 64 (or a list of texts)")
    prompts = heldout_prompts(tokenizer, count, options.prompt_tokens)
    return prompts, f"{count} held-out prompts of {options.prompt_tokens} tokens (tiny-LM evaluation split)"


def _generate_kwargs(method: str, options: SpeculativeOptions, draft: Any) -> dict[str, Any]:
    if method == "draft_model":
        return {"assistant_model": draft}
    if method == "prompt_lookup":
        return {
            "prompt_lookup_num_tokens": options.prompt_lookup_num_tokens,
            "max_matching_ngram_size": options.max_matching_ngram_size,
        }
    return {}


def _prepare_draft(draft: Any, options: SpeculativeOptions) -> None:
    # transformers' default "heuristic" schedule keeps the adapted draft length on the draft's
    # generation config across calls; "heuristic_transient" resets it per call, so each prompt
    # starts from the same setting and results do not depend on prompt order.
    draft.generation_config.num_assistant_tokens = options.num_assistant_tokens
    draft.generation_config.num_assistant_tokens_schedule = "heuristic_transient"


def generate_once(
    model: Any, prompt: list[int], method: str, options: SpeculativeOptions, draft: Any = None
) -> tuple[list[int], float, DraftCounter]:
    """Greedy ``generate`` of one prompt with ``method`` (``plain``, ``draft_model``, ``prompt_lookup``):
    (new token ids, seconds, draft counter)."""
    import torch

    input_ids = torch.tensor([prompt])
    kwargs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "do_sample": False,
        "max_new_tokens": options.max_new_tokens,
        "pad_token_id": model.config.eos_token_id if model.config.pad_token_id is None else model.config.pad_token_id,
        **_generate_kwargs(method, options, draft),
    }
    with torch.inference_mode(), counting_candidates(model) as counter:
        start = time.perf_counter()
        output = model.generate(**kwargs)
        seconds = time.perf_counter() - start
    return output[0, len(prompt) :].tolist(), seconds, counter


@dataclass
class _Totals:
    tokens: int = 0
    seconds: float = 0.0
    proposed: int = 0
    accepted: int = 0
    rounds: int = 0
    identical: int = 0


def speculative_decoding(
    target: ModelArtifact,
    options: SpeculativeOptions,
    *,
    draft_folder: Path | None = None,
    on_log: Callable[[str], None] | None = None,
) -> SpeculativeReport:
    """Measure the methods ``options`` enables on ``target`` (a Hugging Face causal LM).

    ``draft_folder``: the resolved ``options.draft`` (the caller resolves references;
    needed when ``options.draft_model``).
    A draft whose tokenizer differs is refused (``refused["draft_model"]`` holds
    the reason) and prompt lookup still runs; ``PreflightError`` when no method
    is left, for a non-``hf`` target, or for bad prompts.
    """
    import torch

    log = on_log or (lambda message: None)
    if target.format != "hf" or target.task != "causal-lm":
        raise PreflightError(f"speculative decoding needs a Hugging Face causal LM, not {target.format}/{target.task}")
    model, tokenizer = load_causal_lm(Path(target.path))
    prompts, source = _prompt_ids(tokenizer, options)
    methods: list[str] = []
    refused: dict[str, str] = {}
    draft = None
    if options.draft_model:
        if draft_folder is None:
            raise PreflightError("speculative: the draft model was not resolved")
        draft, draft_tokenizer = load_causal_lm(draft_folder)
        try:
            check_same_tokenizer(tokenizer, draft_tokenizer, model.config, draft.config)
        except PreflightError as error:
            refused["draft_model"] = str(error)
            draft = None
        else:
            _prepare_draft(draft, options)
            methods.append("draft_model")
    if options.prompt_lookup:
        methods.append("prompt_lookup")
    if not methods:
        raise PreflightError("speculative: no method to run (" + "; ".join(refused.values() or ["none enabled"]) + ")")

    # Warm-up: the first generate of each method pays one-time costs (allocator, kernels).
    for method in ["plain", *methods]:
        generate_once(model, prompts[0], method, options, draft)
    totals = {method: _Totals() for method in ["plain", *methods]}
    for index, prompt in enumerate(prompts):
        reference, seconds, _ = generate_once(model, prompt, "plain", options, draft)
        totals["plain"].tokens += len(reference)
        totals["plain"].seconds += seconds
        for method in methods:
            tokens, seconds, counter = generate_once(model, prompt, method, options, draft)
            total = totals[method]
            total.tokens += len(tokens)
            total.seconds += seconds
            total.proposed += counter.proposed
            total.accepted += counter.accepted
            total.rounds += counter.rounds
            total.identical += tokens == reference
        log(f"speculative: prompt {index + 1}/{len(prompts)} done")

    plain = totals["plain"]
    plain_rate = plain.tokens / plain.seconds if plain.seconds > 0 else 0.0
    report = SpeculativeReport(
        target=target.name,
        draft=options.draft if "draft_model" in methods else None,
        prompts=len(prompts),
        prompt_source=source,
        max_new_tokens=options.max_new_tokens,
        threads=torch.get_num_threads(),
        baseline_new_tokens=plain.tokens,
        baseline_seconds=plain.seconds,
        baseline_tokens_per_s=plain_rate,
        refused=refused,
        notes=[TRAINED_HEADS_NOTE],
    )
    for method in methods:
        total = totals[method]
        rate = total.tokens / total.seconds if total.seconds > 0 else 0.0
        acceptance = total.accepted / total.proposed if total.proposed else 0.0
        speedup = rate / plain_rate if plain_rate > 0 else 0.0
        if method == "draft_model":
            label = f"draft model ({options.draft})"
            settings = {"num_assistant_tokens": options.num_assistant_tokens, "schedule": "heuristic_transient"}
        else:
            label = "prompt lookup (no draft)"
            settings = {
                "prompt_lookup_num_tokens": options.prompt_lookup_num_tokens,
                "max_matching_ngram_size": options.max_matching_ngram_size,
            }
        report.methods.append(
            MethodResult(
                method=method,
                label=label,
                draft=options.draft if method == "draft_model" else None,
                settings=settings,
                proposed_tokens=total.proposed,
                accepted_tokens=total.accepted,
                acceptance_rate=min(1.0, acceptance),
                target_forward_passes=total.rounds,
                new_tokens=total.tokens,
                seconds=total.seconds,
                tokens_per_s=rate,
                speedup=speedup,
                prompts=len(prompts),
                prompts_identical=total.identical,
                identical_outputs=total.identical == len(prompts),
                flags=speculative_flags(acceptance, speedup),
            )
        )
    if any(not result.identical_outputs for result in report.methods):
        report.notes.append(
            "Greedy speculative decoding should reproduce the target's output exactly; a difference means the "
            "batched verification pass rounded a near-tie differently (or a bug): compare before deploying."
        )
    return report


# --------------------------------------------------------------------------- child process entry point


def main(argv: list[str]) -> int:
    """``IN.json`` = {"artifact": ModelArtifact, "options": SpeculativeOptions, "draft_folder": str | null}."""
    request = json.loads(Path(argv[0]).read_text())
    draft_folder = request.get("draft_folder")
    report = speculative_decoding(
        ModelArtifact.model_validate(request["artifact"]),
        SpeculativeOptions.model_validate(request["options"]),
        draft_folder=Path(draft_folder) if draft_folder else None,
    )
    Path(argv[1]).write_text(report.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
