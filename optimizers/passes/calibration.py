"""Calibration and validation data for static (post-training) quantization passes.

Shared by ``ort_quantize_static`` and ``openvino_quantize``. Two kinds of model:

- text encoders (``feature-extraction``): the built-in ``zoo:pydoc-retrieval``
  calibration split (queries and passages) or an uploaded JSONL file, tokenized
  with the artifact's own tokenizer;
- image classifiers (``image-classification``): the built-in digits calibration
  split (``optimizers.evaluation.images``).

Every calibration set is checked against the evaluation set by content hash
(the built-in eval split always, plus the recipe's own evaluation file when the
pass is told about it): overlap, an empty set, or fewer samples than asked all
raise ``PreflightError`` with a message saying which, before any work starts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError, RecipeError

#: Tasks whose calibration data this module knows how to build.
CALIBRATION_TASKS: tuple[str, ...] = ("feature-extraction", "image-classification")
#: Image models: the one input every exporter in this project names this way.
IMAGE_INPUT = "pixel_values"


@dataclass(frozen=True)
class SampleSet:
    """Calibration or validation samples of one kind, before they become model inputs.

    ``texts`` for text encoders, ``images`` (N×C×H×W float32) for image
    classifiers (with ``labels``); ``name`` says where they came from.
    """

    name: str
    kind: Literal["text", "image"]
    texts: tuple[str, ...] = ()
    images: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts) if self.kind == "text" else len(self.images if self.images is not None else ())

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for ``metadata["details"]``."""
        return {"dataset": self.name, "samples": len(self), "kind": self.kind}


def load_calibration(
    artifact: ModelArtifact,
    reference: str | None,
    samples: int,
    *,
    evaluation_dataset: str | None = None,
) -> SampleSet:
    """The first ``samples`` calibration samples for ``artifact``'s task.

    ``reference``: ``None`` (the built-in calibration split) or a JSONL file
    (text encoders). Raises ``PreflightError`` when the set is empty, holds
    fewer than ``samples`` samples, or shares any sample with the evaluation
    set (the built-in eval split, and ``evaluation_dataset`` when given).
    """
    if artifact.task == "feature-extraction":
        return _text_calibration(reference, samples, evaluation_dataset)
    if artifact.task == "image-classification":
        return _image_calibration(reference, samples)
    raise PreflightError(
        f"static quantization has no calibration data for task {artifact.task}; "
        f"supported: {', '.join(CALIBRATION_TASKS)}"
    )


def load_validation(artifact: ModelArtifact, samples: int) -> SampleSet:
    """Held-out validation samples for accuracy-controlled quantization (never the eval split).

    Text: the built-in ``train`` split of ``zoo:pydoc-retrieval``. Images: the
    digits ``train`` split. Both are disjoint from calibration and eval by
    construction (split by content hash); that is re-checked here.
    """
    if artifact.task == "feature-extraction":
        from optimizers.evaluation.datasets import pydoc_retrieval

        texts = pydoc_retrieval("train").texts
        _require_count("validation set zoo:pydoc-retrieval/train", len(texts), samples)
        chosen = SampleSet(name="zoo:pydoc-retrieval/train", kind="text", texts=tuple(texts[:samples]))
        _check_texts_disjoint(chosen, None)
        return chosen
    if artifact.task == "image-classification":
        from optimizers.evaluation.images import digits_image_split

        split = digits_image_split("train")
        _require_count(f"validation set {split.name}", len(split), samples)
        chosen_split = digits_image_split("train", max_samples=samples)
        _check_images_disjoint(chosen_split)
        return SampleSet(name=split.name, kind="image", images=chosen_split.images, labels=chosen_split.labels)
    raise PreflightError(f"no validation data for task {artifact.task}; supported: {', '.join(CALIBRATION_TASKS)}")


def model_inputs(
    artifact: ModelArtifact,
    samples: SampleSet,
    input_names: list[str],
    *,
    max_seq_length: int,
    pad: bool,
) -> list[dict[str, np.ndarray]]:
    """One batch-of-one input dict per sample, keyed by the graph's input names.

    Text is tokenized with ``artifact``'s tokenizer and truncated to
    ``max_seq_length``; with ``pad`` every sample is padded to exactly that
    length, which ONNX Runtime's histogram calibrators (Entropy, Percentile)
    need because they stack all samples of a tensor into one array.
    """
    if samples.kind == "image":
        name = input_names[0] if len(input_names) == 1 else IMAGE_INPUT
        assert samples.images is not None
        return [{name: samples.images[index : index + 1].astype(np.float32)} for index in range(len(samples))]
    from optimizers.runtimes import load_tokenizer

    tokenizer = load_tokenizer(artifact)
    encoded = tokenizer(
        list(samples.texts),
        truncation=True,
        max_length=max_seq_length,
        padding="max_length" if pad else False,
    )
    missing = [name for name in input_names if name not in encoded]
    if missing:
        raise PreflightError(f"the tokenizer gives no {', '.join(missing)}, which the model takes as input")
    return [
        {name: np.asarray([encoded[name][index]], dtype=np.int64) for name in input_names}
        for index in range(len(samples))
    ]


def content_hash(text: str) -> str:
    """sha256 of a text's UTF-8 bytes (the identity ``check_disjoint`` uses)."""
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- text


def _text_calibration(reference: str | None, samples: int, evaluation_dataset: str | None) -> SampleSet:
    from optimizers.evaluation.datasets import BUILTIN_RETRIEVAL, load_jsonl, pydoc_retrieval

    if reference is None or reference == BUILTIN_RETRIEVAL:
        name, texts = f"{BUILTIN_RETRIEVAL}/calibration", pydoc_retrieval("calibration").texts
    elif reference.startswith("zoo:"):
        raise PreflightError(f"unknown calibration set '{reference}'; available: {BUILTIN_RETRIEVAL}")
    else:
        path = Path(reference)
        if not path.is_file():
            raise PreflightError(f"calibration file not found: {path.name}")
        try:
            name, texts = path.name, load_jsonl(path).texts
        except RecipeError as error:
            if "has no rows" in str(error):
                raise PreflightError(f"calibration set {path.name} is empty: it has no rows") from None
            raise PreflightError(f"calibration set {path.name}: {error}") from None
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise PreflightError(f"calibration set {name} is empty: it has no non-blank text")
    _require_count(f"calibration set {name}", len(texts), samples)
    chosen = SampleSet(name=name, kind="text", texts=tuple(texts[:samples]))
    _check_texts_disjoint(chosen, evaluation_dataset)
    return chosen


def _check_texts_disjoint(chosen: SampleSet, evaluation_dataset: str | None) -> None:
    from optimizers.evaluation.datasets import TextDataset, check_disjoint, load_text_dataset, pydoc_retrieval

    evaluations = [pydoc_retrieval("eval")]
    if evaluation_dataset is not None:
        try:
            evaluations.append(load_text_dataset(evaluation_dataset, split="eval"))
        except RecipeError as error:
            raise PreflightError(f"evaluation set: {error}") from None
    for evaluation in evaluations:
        try:
            check_disjoint(TextDataset(name=chosen.name, texts=list(chosen.texts)), evaluation)
        except RecipeError as error:
            raise PreflightError(str(error)) from None


# --------------------------------------------------------------------------- images


def _image_calibration(reference: str | None, samples: int) -> SampleSet:
    from optimizers.evaluation.images import BUILTIN_DIGITS, digits_image_split

    if reference is not None and reference != BUILTIN_DIGITS:
        raise PreflightError(f"image calibration sets other than {BUILTIN_DIGITS} are not supported yet")
    split = digits_image_split("calibration")
    if not len(split):
        raise PreflightError(f"calibration set {split.name} is empty")
    _require_count(f"calibration set {split.name}", len(split), samples)
    chosen = digits_image_split("calibration", max_samples=samples)
    _check_images_disjoint(chosen)
    return SampleSet(name=split.name, kind="image", images=chosen.images, labels=chosen.labels)


def _check_images_disjoint(chosen) -> None:
    from optimizers.evaluation.images import check_images_disjoint, digits_image_split

    try:
        check_images_disjoint(chosen, digits_image_split("eval"))
    except RecipeError as error:
        raise PreflightError(str(error)) from None


def _require_count(label: str, available: int, asked: int) -> None:
    if available == 0:
        raise PreflightError(f"{label} is empty")
    if available < asked:
        raise PreflightError(f"{label} has {available} samples, fewer than the {asked} asked for")
