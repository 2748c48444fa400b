"""``distill``: task-specific knowledge distillation into a smaller student of the same family.

Students by model kind:

- **BERT encoders** (``hf``, ``feature-extraction``, e.g. ``zoo:minilm``): the same
  config with ``student_layers`` layers (fewer than the teacher's). ``init:
  teacher`` copies the embeddings, the pooler and the teacher layers
  ``teacher_layers`` (default: the first and the last and evenly spaced between,
  e.g. 0, 3, 5 of 6 — the first and last layers are the most sensitive ones, see
  ``prune_structured``); ``init: random`` starts from a fresh initialisation.
  Embedding distillation on unlabelled English that ships with every CPython
  (``distillation_texts``, about 10,400 texts): the prose paragraphs and their
  single sentences from the tiny-LM corpus (``optimizers.zoo.tiny_lm.corpus_splits``:
  the ``pydoc_data.topics`` documentation and the docstrings of the top-level
  standard-library modules) and from the ``zoo:pydoc-retrieval`` train split.
  Never the calibration or eval split: a paragraph sharing any sentence with one
  of their texts is left out whole, and no training text has the content hash of
  a held-out text. Batches group texts of similar length (less padding); with
  ``init: teacher`` the word embeddings stay the teacher's (frozen). Loss =
  ``1 − cosine`` between the student's and the teacher's mean-pooled embeddings
  + ``hidden_weight`` × the MSE between their last hidden states over real
  tokens. ``temperature`` and ``alpha`` do not apply (there are no class
  logits). Saved as an ``hf`` folder with the teacher's tokenizer and pooling
  files; it loads with ``AutoModel.from_pretrained``.
- **CNNs** (``torch``, ``image-classification``, ``zoo:digits-cnn``): a digits CNN
  with ``student_channels`` / ``student_hidden`` (default: half of the
  teacher's), trained on the digits train split with
  ``alpha × T² × KL(teacher_T ‖ student_T) + (1 − alpha) × CE(student, label)``
  (``alpha = 0`` trains on the hard labels alone, without the teacher). ``init:
  teacher`` starts each conv from the teacher's filters of largest L1 norm;
  ``init: random`` from a seeded fresh initialisation.

``progressive`` distills through intermediate sizes in a chain (teacher → each of
``intermediate`` → student; by default one midpoint, e.g. 6 → 4 → 3 layers), each
link's student becoming the next link's teacher and initialised from it. Each
link trains for ``steps`` steps. AdamW, cosine decay to 10% of ``learning_rate``,
batches drawn from a seeded generator; encoder students train without dropout
(the saved config keeps the teacher's rates); on a machine with CUDA the training
runs there.

Measured quality (pooled cosine to the teacher on all 256 texts of the held-out
eval split, 3 of 6 MiniLM layers): 0.62 untrained from layers 0, 3, 5. On the
477 pydoc train sentences alone: 0.88 after 120 steps, 0.89 after 300, 0.90
after 1000 (GPU). On the ~10,400 texts now, the default 120 steps of 32 texts:
0.882 with ``hidden_weight`` 4 (the default), 0.879 with 1; pure pooled cosine
(``hidden_weight`` 0, 240 steps of 16, learning rate 1e-3) 0.871. A default run
takes 230–380 s of CPU time (5–6.5 min wall) on a busy shared 2-core CPU. At
120 steps the student sees only ~3,800 texts, so 20× more text barely moves it
(0.883 on the 477 sentences); the issue's 0.95 is not reached at this budget,
and longer runs on the larger text are not measured yet. A random start reaches
0.69 after 300 steps (477 sentences).

``metadata["details"]``: ``training_curve`` (``[{"step", "loss", "link"}]``,
steps counted across links), ``links`` (per link: sizes, steps, first and final
loss, quality on the calibration split — pooled cosine to the original teacher,
or accuracy), ``student`` sizes, ``parameters_teacher``, ``parameters_student``,
``calibration_cosine`` or ``calibration_accuracy`` (and the teacher's); encoders also
``train_texts`` (count) and ``train_text_source``. Preflight
refuses a student that is not smaller than its teacher, a chain that does not
shrink at every link, and quantized inputs.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.passes import register
from optimizers.passes.base import SAME_AS_INPUT, Pass, PassConfig, PassContext, Preflight
from optimizers.passes.module_edit import is_quantized

#: Where the encoder's training text comes from (``details["train_text_source"]``).
TRAIN_TEXT_SOURCE = (
    "prose paragraphs and sentences of Python's pydoc topics and standard-library docstrings (the tiny-LM corpus) "
    "and the pydoc-retrieval train split, minus everything sharing a sentence with its calibration or eval split"
)
#: Encoder texts are cut to this many tokens (pydoc sentences are shorter; it bounds step time).
MAX_TOKENS = 128


class DistillConfig(PassConfig):
    student_layers: int = Field(
        3, ge=1, le=48, description="Encoders: the student's layer count (fewer than the teacher's)."
    )
    teacher_layers: list[int] | None = Field(
        None,
        description="Encoders, init teacher: which teacher layers initialise the student's (default: first, last, "
        "evenly spaced between).",
    )
    hidden_weight: float = Field(
        4.0,
        ge=0.0,
        le=100.0,
        description="Encoders: weight of the last-hidden-state MSE beside the pooled cosine loss.",
    )
    student_channels: list[int] | None = Field(
        None, description="CNNs: the student's conv channels (default: half of the teacher's)."
    )
    student_hidden: int | None = Field(None, ge=1, description="CNNs: the student's hidden width (default: half).")
    init: Literal["teacher", "random"] = Field(
        "teacher", description="Start the student from the teacher's weights (layers / strongest filters) or at random."
    )
    steps: int | None = Field(
        None, ge=0, le=100_000, description="Training steps per link (default: 120 for encoders, 300 for CNNs)."
    )
    learning_rate: float | None = Field(
        None, gt=0.0, le=1.0, description="AdamW peak learning rate (default: 5e-4 for encoders, 1e-2 for CNNs)."
    )
    batch_size: int | None = Field(None, ge=1, le=4096, description="Batch size (default: 32 texts, 64 images).")
    temperature: float = Field(4.0, gt=0.0, le=100.0, description="CNNs: softmax temperature of the soft targets.")
    alpha: float = Field(
        0.7, ge=0.0, le=1.0, description="CNNs: weight of the soft (teacher) loss; 1 − alpha goes to the hard labels."
    )
    seed: int = Field(0, description="Seed for the student's initialisation and the batch order.")
    progressive: bool = Field(False, description="Distill through intermediate sizes in a chain.")
    intermediate: list[int] | None = Field(
        None, description="Progressive, encoders: the intermediate layer counts, largest first (default: one midpoint)."
    )
    eval_samples: int = Field(
        64, ge=4, le=1000, description="Calibration texts for each link's quality (encoders; CNNs use the whole split)."
    )


@dataclass
class _Link:
    """One distillation: ``teacher`` sizes → ``student`` sizes."""

    teacher: Any
    student: Any
    losses: list[float] = field(default_factory=list)
    quality: float | None = None


@register
class Distill(Pass):
    name = "distill"
    title = "Knowledge distillation"
    description = (
        "Train a smaller student on the teacher's soft targets: a MiniLM with fewer layers (embedding distillation on "
        "Python's documentation and docstrings) or a digits CNN with fewer channels (temperature, alpha between soft "
        "and hard loss); optionally progressive through intermediate sizes."
    )
    Config = DistillConfig
    input_formats = ("hf", "torch")
    tasks = ("feature-extraction", "image-classification")
    output_format = SAME_AS_INPUT

    def preflight(self, artifact: ModelArtifact, config: DistillConfig) -> Preflight:
        report = super().preflight(artifact, config)
        if is_quantized(artifact):
            raise PreflightError(f"distill needs a floating-point teacher; '{artifact.name}' is already quantized")
        kind = _model_kind(artifact)
        chain = _chain(artifact, config, kind)
        steps = _steps(config, kind)
        report.notes.append(
            "chain: " + " → ".join(_describe_sizes(sizes, kind) for sizes in chain) + f", {steps} steps per link"
        )
        if kind == "BERT encoder":
            # Measured 2.5-3.3 s a step (32 texts) on a shared 2-core CPU.
            report.estimated_seconds = 10.0 + 2.5 * steps * (len(chain) - 1)
            report.notes.append(f"training text: {len(distillation_texts()):,} texts, {TRAIN_TEXT_SOURCE}")
            if {"temperature", "alpha"} & config.model_fields_set:
                report.notes.append("temperature and alpha apply to classifiers; an encoder is distilled on embeddings")
        else:
            report.estimated_seconds = 2.0 + 0.01 * steps * (len(chain) - 1)
        return report

    def run(self, artifact: ModelArtifact, config: DistillConfig, ctx: PassContext) -> ModelArtifact:
        kind = _model_kind(artifact)
        chain = _chain(artifact, config, kind)
        trainer: _Trainer = (
            _EncoderTrainer(artifact, config) if kind == "BERT encoder" else _CnnTrainer(artifact, config)
        )
        steps = _steps(config, kind)
        total = steps * (len(chain) - 1)
        curve: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        teacher = trainer.teacher
        done = 0
        for number, (big, small) in enumerate(zip(chain, chain[1:], strict=False), start=1):
            ctx.check_cancelled()
            student = trainer.make_student(teacher, big, small)

            def on_step(step: int, loss: float, offset: int = done) -> None:
                ctx.progress(
                    min(0.95, (offset + step) / max(total, 1) * 0.95),
                    f"step {offset + step} of {total}, loss {loss:.3f}",
                )

            losses = trainer.train(teacher, student, steps, on_step, ctx.should_cancel, link=number)
            ctx.check_cancelled()
            student.eval()
            quality = trainer.quality(student)
            links.append(
                {
                    "link": number,
                    "teacher": _describe_sizes(big, kind),
                    "student": _describe_sizes(small, kind),
                    "steps": len(losses),
                    "first_loss": round(losses[0], 6) if losses else None,
                    "final_loss": round(float(np.mean(losses[-10:])), 6) if losses else None,
                    trainer.quality_name: round(quality, 6),
                    "parameters": _parameter_count(student),
                }
            )
            ctx.log(
                f"link {number}: {links[-1]['teacher']} → {links[-1]['student']}, {trainer.quality_name} {quality:.4f}"
            )
            curve += [{"step": point["step"] + done, "loss": point["loss"], "link": number} for point in _thin(losses)]
            done += len(losses)
            teacher = student
        ctx.progress(0.97, "saving the student")
        out = ctx.work_dir
        staging = out.with_name(f".{out.name}.partial")
        if staging.exists():
            shutil.rmtree(staging)
        try:
            trainer.save(teacher, chain[-1], staging)
            trainer.verify_reload(teacher, staging)
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        details: dict[str, Any] = {
            "training_curve": curve,
            "links": links,
            "student": _describe_sizes(chain[-1], kind),
            "parameters_teacher": _parameter_count(trainer.teacher),
            "parameters_student": _parameter_count(teacher),
            trainer.quality_name: links[-1][trainer.quality_name],
            f"teacher_{trainer.quality_name}": round(trainer.quality(trainer.teacher), 6),
            "steps_per_link": steps,
            "init": config.init,
        }
        if kind == "BERT encoder":
            details["train_texts"] = len(trainer.texts)
            details["train_text_source"] = TRAIN_TEXT_SOURCE
        return ModelArtifact.from_folder(
            out,
            name=self.name,
            format=artifact.format,
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={"details": details},
        )


# --------------------------------------------------------------------------- chain and sizes


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise PreflightError(f"{folder}: no readable config.json ({error})") from None
    return config if isinstance(config, dict) else {}


def _model_kind(artifact: ModelArtifact) -> str:
    config = _read_config(artifact.folder)
    if artifact.format == "hf" and artifact.task == "feature-extraction" and config.get("model_type") == "bert":
        return "BERT encoder"
    if artifact.format == "torch" and artifact.task == "image-classification":
        if config.get("inferopt_architecture") == "digits-cnn":
            return "CNN"
    raise PreflightError(
        f"distill knows BERT encoders (hf feature-extraction, model_type bert) and the digits CNN (torch "
        f"image-classification); '{artifact.name}' is a {artifact.format} {artifact.task} model"
    )


def _steps(config: DistillConfig, kind: str) -> int:
    if config.steps is not None:
        return config.steps
    return 120 if kind == "BERT encoder" else 300


def _describe_sizes(sizes: Any, kind: str) -> str:
    if kind == "BERT encoder":
        return f"{sizes} layers"
    return f"channels {sizes['channels']}, hidden {sizes['hidden']}"


def _cnn_parameters(sizes: dict[str, Any], teacher_config: dict[str, Any]) -> int:
    channels, hidden = sizes["channels"], sizes["hidden"]
    c_in, height, width = teacher_config.get("input_shape", [1, 8, 8])
    total, previous = 0, c_in
    for count in channels:
        total += count * previous * 9 + count
        previous = count
    total += previous * (height // 2) * (width // 2) * hidden + hidden
    total += hidden * teacher_config.get("num_classes", 10) + teacher_config.get("num_classes", 10)
    return total


def _chain(artifact: ModelArtifact, config: DistillConfig, kind: str) -> list[Any]:
    """Sizes from the teacher to the student (more than two when progressive); ``PreflightError`` unless shrinking."""
    teacher_config = _read_config(artifact.folder)
    if kind == "BERT encoder":
        layers = int(teacher_config["num_hidden_layers"])
        student = config.student_layers
        if student >= layers:
            raise PreflightError(
                f"distill: the student must be smaller than its teacher; student_layers={student} but the teacher "
                f"has {layers} layers"
            )
        if config.teacher_layers is not None:
            if len(config.teacher_layers) != student or any(not 0 <= i < layers for i in config.teacher_layers):
                raise PreflightError(
                    f"distill: teacher_layers must list {student} distinct layer indices in 0..{layers - 1}, "
                    f"got {config.teacher_layers}"
                )
            if len(set(config.teacher_layers)) != student:
                raise PreflightError(f"distill: teacher_layers must be distinct, got {config.teacher_layers}")
        if not config.progressive:
            if config.intermediate:
                raise PreflightError("distill: intermediate sizes need progressive: true")
            return [layers, student]
        middle = config.intermediate if config.intermediate is not None else [(layers + student) // 2]
        chain = [layers, *middle, student]
        if any(a <= b for a, b in zip(chain, chain[1:], strict=False)) or len(chain) < 3:
            raise PreflightError(
                f"distill: a progressive chain must shrink at every link ({' → '.join(map(str, chain))}); "
                f"there is no layer count between {layers} and {student}"
                if len(chain) < 3 or chain[1] in (layers, student)
                else f"distill: a progressive chain must shrink at every link ({' → '.join(map(str, chain))})"
            )
        return chain
    teacher_sizes = {"channels": [int(c) for c in teacher_config["channels"]], "hidden": int(teacher_config["hidden"])}
    student_sizes = {
        "channels": list(config.student_channels or [max(1, c // 2) for c in teacher_sizes["channels"]]),
        "hidden": int(config.student_hidden or max(1, teacher_sizes["hidden"] // 2)),
    }
    if len(student_sizes["channels"]) != len(teacher_sizes["channels"]) or min(student_sizes["channels"]) < 1:
        raise PreflightError(
            f"distill: student_channels must give {len(teacher_sizes['channels'])} positive channel counts "
            f"(one per teacher convolution {teacher_sizes['channels']}), got {student_sizes['channels']}"
        )
    student_params = _cnn_parameters(student_sizes, teacher_config)
    teacher_params = _cnn_parameters(teacher_sizes, teacher_config)
    larger = [
        f"conv {i}: {s} > {t}"
        for i, (s, t) in enumerate(zip(student_sizes["channels"], teacher_sizes["channels"], strict=True))
        if s > t
    ]
    if student_sizes["hidden"] > teacher_sizes["hidden"]:
        larger.append(f"hidden {student_sizes['hidden']} > {teacher_sizes['hidden']}")
    if larger or student_params >= teacher_params:
        raise PreflightError(
            f"distill: the student must be smaller than its teacher; student {_describe_sizes(student_sizes, kind)} "
            f"({student_params:,} parameters) vs teacher {_describe_sizes(teacher_sizes, kind)} "
            f"({teacher_params:,} parameters){'; ' + ', '.join(larger) if larger else ''}"
        )
    if not config.progressive:
        return [teacher_sizes, student_sizes]
    if config.intermediate is not None:
        raise PreflightError("distill: intermediate sizes are for encoders; a CNN chain uses the midpoint sizes")
    middle = {
        "channels": [(t + s) // 2 for t, s in zip(teacher_sizes["channels"], student_sizes["channels"], strict=True)],
        "hidden": (teacher_sizes["hidden"] + student_sizes["hidden"]) // 2,
    }
    if middle in (teacher_sizes, student_sizes):
        raise PreflightError("distill: the student is too close to its teacher for an intermediate size")
    return [teacher_sizes, middle, student_sizes]


def _parameter_count(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _thin(losses: list[float]) -> list[dict[str, float]]:
    from optimizers.models.training import curve

    return curve(losses, points=50)


def _cosine_schedule(optimizer, peak: float, step: int, steps: int) -> None:
    fraction = step / (steps - 1) if steps > 1 else 0.0
    rate = peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * fraction)))
    for group in optimizer.param_groups:
        group["lr"] = rate


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _Trainer:
    teacher: Any
    quality_name: str

    def make_student(self, teacher, big: Any, small: Any): ...
    def train(
        self, teacher, student, steps: int, on_step: Callable, should_stop: Callable, *, link: int
    ) -> list[float]: ...
    def quality(self, model) -> float: ...
    def save(self, model, sizes: Any, folder: Path) -> None: ...
    def verify_reload(self, model, folder: Path) -> None: ...


# --------------------------------------------------------------------------- encoders


def default_teacher_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """First and last teacher layers and evenly spaced between (half up): 6 → 3 gives [0, 3, 5]."""
    if student_layers == 1:
        return [teacher_layers - 1]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [int(math.floor(i * step + 0.5)) for i in range(student_layers)]


#: Paragraphs whose lines start so are code samples, grammar, doctests or tables, not prose.
_NOT_PROSE = ("   ", "\t", ">>>", "+", "|")
#: Training sentences shorter than this (characters) are left out (headings, fragments).
_MIN_SENTENCE_CHARS = 20


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _prose_paragraphs(document: str) -> Iterator[str]:
    """The document's prose paragraphs, whitespace-normalised (no code, grammar, tables or headings)."""
    for block in re.split(r"\n\s*\n", document):
        lines = block.splitlines()
        if not lines or any(line.startswith(_NOT_PROSE) for line in lines):
            continue
        if len(lines) == 2 and set(lines[1].strip()) <= set("*=-~^"):
            continue  # a reST heading and its underline
        yield " ".join(block.split())


@functools.lru_cache(maxsize=1)
def _distillation_texts() -> tuple[str, ...]:
    from optimizers.evaluation.datasets import _SENTENCE_END, pydoc_retrieval
    from optimizers.zoo.tiny_lm import corpus_splits

    held_out = pydoc_retrieval("eval").texts + pydoc_retrieval("calibration").texts
    held_out_hashes = {_sha256(text) for text in held_out}
    # The held-out texts' single sentences too: a paragraph sharing any of them is a held-out pair's source.
    held_out_sentences = held_out_hashes | {_sha256(s) for text in held_out for s in _SENTENCE_END.split(text)}
    # All of the tiny-LM corpus's splits (those are the tiny LM's, not the encoder's): the pydoc topics in
    # paragraph chunks and the standard-library docstrings. Plus the pydoc retrieval train split itself.
    documents = [text for texts in corpus_splits().values() for text in texts]
    documents += pydoc_retrieval("train").texts
    texts: set[str] = set()
    for document in documents:
        for paragraph in _prose_paragraphs(document):
            sentences = _SENTENCE_END.split(paragraph)
            if any(_sha256(sentence) in held_out_sentences for sentence in [paragraph, *sentences]):
                continue
            if len(sentences) > 1:
                texts.add(paragraph)
            texts.update(sentence for sentence in sentences if len(sentence) >= _MIN_SENTENCE_CHARS)
    return tuple(sorted(text for text in texts if _sha256(text) not in held_out_hashes))


def distillation_texts() -> list[str]:
    """Encoder training text: English prose paragraphs ("passages") and their single sentences, sorted.

    Sources: the whole tiny-LM corpus (``optimizers.zoo.tiny_lm.corpus_splits``: the
    ``pydoc_data.topics`` documentation in paragraph chunks and the docstrings of
    the top-level standard-library modules) and the ``zoo:pydoc-retrieval`` train
    split; code samples, grammar, doctests, tables and headings are skipped. Held
    out: every paragraph that contains a sentence of a calibration or eval text of
    ``zoo:pydoc-retrieval`` (so the pairs those splits were cut from), and any
    text whose content hash is in either split. Deterministic for a given Python
    (its standard library is the text); about 10,000 texts.
    """
    return list(_distillation_texts())


def _length_batches(lengths: list[int], batch_size: int, steps: int, generator) -> list[list[int]]:
    """``steps`` batches of text indices: shuffled epochs, texts of similar length batched together.

    Each epoch is a permutation from ``generator``, cut into pools of 16 batches; a pool
    is sorted by length before it is cut into batches, and the epoch's batches are
    shuffled again. A batch pads to its longest text (the texts run from 5 to 128
    tokens): padding falls from about 70% of the tokens of random batches of 32 to
    about 12%. A short last batch is dropped.
    """
    import torch

    batches: list[list[int]] = []
    pool = batch_size * 16
    while len(batches) < steps:
        order = torch.randperm(len(lengths), generator=generator).tolist()
        epoch: list[list[int]] = []
        for start in range(0, len(order), pool):
            ranked = sorted(order[start : start + pool], key=lambda index: lengths[index])
            epoch += [ranked[i : i + batch_size] for i in range(0, len(ranked), batch_size)]
        epoch = [batch for batch in epoch if len(batch) == batch_size]
        batches += [epoch[int(i)] for i in torch.randperm(len(epoch), generator=generator)]
    return batches[:steps]


class _EncoderTrainer(_Trainer):
    quality_name = "calibration_cosine"

    def __init__(self, artifact: ModelArtifact, config: DistillConfig) -> None:
        from transformers import AutoModel, AutoTokenizer

        from optimizers.evaluation.datasets import pydoc_retrieval

        self.artifact = artifact
        self.config = config
        self.device = _device()
        self.teacher = (
            AutoModel.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True)
            .eval()
            .to(self.device)
        )
        self.tokenizer = AutoTokenizer.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True)
        self.texts = distillation_texts()
        # Calibration split: each link's quality is measured on text the student never trained on,
        # while the eval split stays held out for the pipeline.
        self.quality_texts = pydoc_retrieval("calibration").texts[: config.eval_samples]
        self._reference = None
        self._text_lengths: list[int] | None = None

    def _tokens(self, texts: list[str]) -> dict[str, Any]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        return {key: value.to(self.device) for key, value in batch.items()}

    def _lengths(self) -> list[int]:
        """Token count of each training text (truncated to ``MAX_TOKENS``), computed once."""
        if self._text_lengths is None:
            encoded = self.tokenizer(self.texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
            self._text_lengths = [len(ids) for ids in encoded]
        return self._text_lengths

    @staticmethod
    def _pool(hidden, mask):
        import torch

        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def _embed(self, model, texts: list[str]):
        import torch

        with torch.no_grad():
            chunks = []
            for start in range(0, len(texts), 32):
                batch = self._tokens(texts[start : start + 32])
                chunks.append(self._pool(model(**batch).last_hidden_state, batch["attention_mask"]))
            return torch.cat(chunks)

    def make_student(self, teacher, big: int, small: int):
        import torch
        from transformers import AutoModel

        config = copy.deepcopy(teacher.config)
        config.num_hidden_layers = small
        # No dropout while distilling: the student imitates a fixed function and learned faster without it
        # (measured: 0.889 vs 0.883 pooled cosine after 300 steps). save() writes the teacher's rates back.
        config.hidden_dropout_prob = 0.0
        config.attention_probs_dropout_prob = 0.0
        torch.manual_seed(self.config.seed)
        student = AutoModel.from_config(config)
        if self.config.init == "teacher":
            chosen = (
                self.config.teacher_layers
                if self.config.teacher_layers is not None and big == self.teacher.config.num_hidden_layers
                else default_teacher_layers(big, small)
            )
            student.embeddings.load_state_dict(teacher.embeddings.state_dict())
            if getattr(teacher, "pooler", None) is not None and getattr(student, "pooler", None) is not None:
                student.pooler.load_state_dict(teacher.pooler.state_dict())
            for index, source in enumerate(chosen):
                student.encoder.layer[index].load_state_dict(teacher.encoder.layer[source].state_dict())
        return student.to(self.device)

    def train(self, teacher, student, steps, on_step, should_stop, *, link: int) -> list[float]:
        import torch

        if steps == 0:
            return []
        batch_size = min(self.config.batch_size or 32, len(self.texts))
        rate = self.config.learning_rate or 5e-4
        generator = torch.Generator().manual_seed(self.config.seed + link)
        if self.config.init == "teacher":
            # The word embeddings are the teacher's: keeping them fixed saves most of the optimizer's work
            # (they are 2/3 of the student's weights) and leaves words unseen in training where the teacher has them.
            student.embeddings.word_embeddings.weight.requires_grad_(False)
        trainable = [parameter for parameter in student.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=rate, weight_decay=0.01)
        teacher.eval()
        student.train()
        losses: list[float] = []
        batches = _length_batches(self._lengths(), batch_size, steps, generator)
        for step, indices in enumerate(batches):
            if should_stop():
                break
            texts = [self.texts[index] for index in indices]
            batch = self._tokens(texts)
            with torch.no_grad():
                target_hidden = teacher(**batch).last_hidden_state
                target = self._pool(target_hidden, batch["attention_mask"])
            hidden = student(**batch).last_hidden_state
            pooled = self._pool(hidden, batch["attention_mask"])
            loss = (1.0 - (pooled * target).sum(-1)).mean()
            if self.config.hidden_weight:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                squared = ((hidden - target_hidden) ** 2 * mask).sum() / (mask.sum() * hidden.shape[-1])
                loss = loss + self.config.hidden_weight * squared
            _cosine_schedule(optimizer, rate, step, steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            on_step(step + 1, losses[-1])
        return losses

    def quality(self, model) -> float:
        if self._reference is None:
            self._reference = self._embed(self.teacher, self.quality_texts)
        was_training = model.training
        model.eval()
        value = float((self._embed(model, self.quality_texts) * self._reference).sum(-1).mean())
        model.train(was_training)
        return value

    def save(self, model, sizes: int, folder: Path) -> None:
        from optimizers.passes.common import copy_companion_files

        copy_companion_files(self.artifact.folder, folder)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            setattr(model.config, name, getattr(self.teacher.config, name))
        model.to("cpu").save_pretrained(folder, safe_serialization=True)  # config.json with the new layer count

    def verify_reload(self, model, folder: Path) -> None:
        import torch
        from transformers import AutoModel

        reloaded = AutoModel.from_pretrained(folder, trust_remote_code=False, local_files_only=True).eval()
        if reloaded.config.num_hidden_layers != len(model.encoder.layer):
            raise PassError("the saved student's config does not give its layer count")
        texts = self.quality_texts[:4]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        model.to("cpu").eval()
        with torch.no_grad():
            difference = float((reloaded(**batch).last_hidden_state - model(**batch).last_hidden_state).abs().max())
        if difference > 1e-4:
            raise PassError(f"the saved student differs from the trained one after reload ({difference:.2e})")


# --------------------------------------------------------------------------- CNNs


class _CnnTrainer(_Trainer):
    quality_name = "calibration_accuracy"

    def __init__(self, artifact: ModelArtifact, config: DistillConfig) -> None:
        from optimizers.evaluation.images import digits_split
        from optimizers.models import load_torch_module, read_torch_config

        self.artifact = artifact
        self.config = config
        self.teacher_config = read_torch_config(artifact)
        self.teacher = load_torch_module(artifact)
        self.images, self.labels = digits_split("train")
        self.quality_images, self.quality_labels = digits_split("calibration")

    def _config_for(self, sizes: dict[str, Any]) -> dict[str, Any]:
        return {**self.teacher_config, "channels": list(sizes["channels"]), "hidden": int(sizes["hidden"])}

    def make_student(self, teacher, big: dict[str, Any], small: dict[str, Any]):
        import torch
        from torch import nn

        from optimizers.models import build_torch_module

        torch.manual_seed(self.config.seed)
        student = build_torch_module(self._config_for(small))
        if self.config.init == "teacher":
            # The strongest filters (largest L1 norm) of each teacher conv, wired to the kept inputs.
            with torch.no_grad():
                teacher_convs = [m for m in teacher.features if isinstance(m, nn.Conv2d)]
                student_convs = [m for m in student.features if isinstance(m, nn.Conv2d)]
                previous = torch.arange(teacher_convs[0].weight.shape[1])
                for old, new in zip(teacher_convs, student_convs, strict=True):
                    keep = (
                        old.weight.abs().sum(dim=(1, 2, 3)).argsort(descending=True)[: new.out_channels].sort().values
                    )
                    new.weight.copy_(old.weight[keep][:, previous])
                    new.bias.copy_(old.bias[keep])
                    previous = keep
        return student

    def train(self, teacher, student, steps, on_step, should_stop, *, link: int) -> list[float]:
        import torch
        import torch.nn.functional as F

        from optimizers.models.training import deterministic_threads

        if steps == 0:
            return []
        data = torch.from_numpy(np.ascontiguousarray(self.images, dtype=np.float32))
        targets = torch.from_numpy(np.ascontiguousarray(self.labels, dtype=np.int64))
        with torch.no_grad():
            teacher_logits = teacher.eval()(data)
        temperature, alpha = self.config.temperature, self.config.alpha
        batch_size = min(self.config.batch_size or 64, len(targets))
        rate = self.config.learning_rate or 1e-2
        losses: list[float] = []
        # One thread: these models are tiny, and fixed threads keep seeded runs identical.
        with deterministic_threads(1):
            generator = torch.Generator().manual_seed(self.config.seed + link)
            optimizer = torch.optim.AdamW(student.parameters(), lr=rate)
            student.train()
            order, position = torch.randperm(len(targets), generator=generator), 0
            for step in range(steps):
                if should_stop():
                    break
                if position + batch_size > len(targets):
                    order, position = torch.randperm(len(targets), generator=generator), 0
                index = order[position : position + batch_size]
                position += batch_size
                logits = student(data[index])
                hard = F.cross_entropy(logits, targets[index])
                soft = F.kl_div(
                    F.log_softmax(logits / temperature, dim=-1),
                    F.log_softmax(teacher_logits[index] / temperature, dim=-1),
                    log_target=True,
                    reduction="batchmean",
                ) * (temperature**2)
                loss = alpha * soft + (1.0 - alpha) * hard
                _cosine_schedule(optimizer, rate, step, steps)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                if (step + 1) % 10 == 0 or step + 1 == steps:
                    on_step(step + 1, losses[-1])
        return losses

    def quality(self, model) -> float:
        from optimizers.models.training import accuracy

        return accuracy(model, self.quality_images, self.quality_labels)

    def save(self, model, sizes: dict[str, Any], folder: Path) -> None:
        from optimizers.models import save_torch_module

        save_torch_module(model, self._config_for(sizes), folder)

    def verify_reload(self, model, folder: Path) -> None:
        import torch

        from optimizers.models import load_torch_module

        reloaded = load_torch_module(folder)
        sample = torch.from_numpy(np.ascontiguousarray(self.quality_images[:16], dtype=np.float32))
        with torch.no_grad():
            difference = float((reloaded(sample) - model.eval()(sample)).abs().max())
        if difference > 1e-4:
            raise PassError(f"the saved student differs from the trained one after reload ({difference:.2e})")
