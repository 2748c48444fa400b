"""Image data for ``image-classification``: scikit-learn's bundled digits, split by content hash.

``load_digits`` ships with scikit-learn (1797 grey 8×8 images, pixel values
0..16, ten classes); nothing is downloaded. Each distinct image goes to the
``train`` (70%), ``calibration`` (10%) or ``eval`` (20%) split by the sha256
of its pixel bytes, so the splits are disjoint by construction, identical on
every machine, and an image that occurs twice in the data can never sit in
two splits. Images that occur with two different labels are dropped.

Model input (``pixel_values``): float32 N×1×8×8, pixels divided by 16 so they
lie in [0, 1]. Labels: int64 class indices.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from optimizers.errors import RecipeError

Split = Literal["train", "calibration", "eval"]
SPLITS: tuple[str, ...] = ("train", "calibration", "eval")
BUILTIN_DIGITS = "zoo:digits"
#: Largest raw pixel value in ``load_digits`` (the normalisation divisor).
PIXEL_MAX = 16.0
INPUT_SHAPE = (1, 8, 8)


@dataclass(frozen=True)
class ImageSplit:
    """One split: normalised images (N×1×8×8 float32), labels (N int64), content hashes (N)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    hashes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def image_hash(raw_pixels: np.ndarray) -> str:
    """sha256 of an image's raw pixel bytes (uint8, row-major): its identity across splits."""
    return hashlib.sha256(np.ascontiguousarray(raw_pixels, dtype=np.uint8).tobytes()).hexdigest()


def split_of_hash(content_hash: str) -> Split:
    """``eval`` (20%), ``calibration`` (10%) or ``train`` (70%) from a content hash."""
    bucket = int(content_hash[:8], 16) % 10
    if bucket < 2:
        return "eval"
    if bucket < 3:
        return "calibration"
    return "train"


def normalize(raw_pixels: np.ndarray) -> np.ndarray:
    """Raw digits pixels (…×8×8, 0..16) → model input float32 N×1×8×8 in [0, 1]."""
    images = np.asarray(raw_pixels, dtype=np.float32).reshape(-1, *INPUT_SHAPE)
    return images / np.float32(PIXEL_MAX)


@functools.cache
def _digits_splits() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    raw = np.asarray(digits.images, dtype=np.uint8)  # values 0..16, exact in uint8
    labels = np.asarray(digits.target, dtype=np.int64)
    by_hash: dict[str, tuple[int, int]] = {}
    conflicting: set[str] = set()
    for index in range(len(raw)):
        digest = image_hash(raw[index])
        if digest in by_hash and by_hash[digest][1] != labels[index]:
            conflicting.add(digest)
        by_hash.setdefault(digest, (index, int(labels[index])))
    chosen: dict[str, list[tuple[str, int]]] = {name: [] for name in SPLITS}
    for digest in sorted(by_hash):  # deterministic order, independent of the file's order
        if digest not in conflicting:
            chosen[split_of_hash(digest)].append((digest, by_hash[digest][0]))
    result = {}
    for name, rows in chosen.items():
        indices = np.asarray([index for _, index in rows], dtype=np.int64)
        result[name] = (raw[indices], labels[indices], tuple(digest for digest, _ in rows))
    return result


def digits_image_split(split: Split, max_samples: int | None = None) -> ImageSplit:
    """One split of the digits set as an ``ImageSplit`` (deterministic order; first ``max_samples``)."""
    if split not in SPLITS:
        raise RecipeError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
    raw, labels, hashes = _digits_splits()[split]
    if max_samples is not None:
        raw, labels, hashes = raw[:max_samples], labels[:max_samples], hashes[:max_samples]
    return ImageSplit(name=f"{BUILTIN_DIGITS}/{split}", images=normalize(raw), labels=labels.copy(), hashes=hashes)


def digits_split(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 N×1×8×8 in [0, 1], labels int64 N) of one split of the digits set."""
    data = digits_image_split(split)
    return data.images, data.labels


def digits_raw_split(split: Split) -> np.ndarray:
    """Raw pixels (N×8×8 uint8, 0..16) of one split, for timing the pre-processing too."""
    return _digits_splits()[split][0].copy()


def load_image_split(reference: str | None, split: Split, max_samples: int | None = None) -> ImageSplit:
    """Resolve a recipe's ``dataset`` for images (``None`` → the built-in digits set)."""
    if reference is None or reference == BUILTIN_DIGITS:
        return digits_image_split(split, max_samples)
    raise RecipeError(f"image datasets other than {BUILTIN_DIGITS} are not supported yet (got {reference!r})")


def check_images_disjoint(first: ImageSplit, second: ImageSplit) -> None:
    """Refuse two image sets that share an image (by content hash), e.g. calibration vs eval."""
    if not len(first):
        raise RecipeError(f"image set {first.name} is empty")
    overlap = set(first.hashes) & set(second.hashes)
    if overlap:
        raise RecipeError(
            f"image set {first.name} shares {len(overlap)} images with {second.name}; evaluation must be held out"
        )


__all__ = [
    "BUILTIN_DIGITS",
    "INPUT_SHAPE",
    "SPLITS",
    "ImageSplit",
    "check_images_disjoint",
    "digits_image_split",
    "digits_raw_split",
    "digits_split",
    "image_hash",
    "load_image_split",
    "normalize",
    "split_of_hash",
]
