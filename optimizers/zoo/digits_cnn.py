"""``zoo:digits-cnn``: a small CNN trained here on scikit-learn's bundled digits (seconds on a CPU).

Data: ``optimizers.evaluation.images`` (``load_digits``, split train / calibration /
eval by the content hash of each image). The model (``optimizers.models.digits_cnn``,
channels 16 → 32, hidden 64, 38K parameters) is trained on the train split only,
with a fixed seed, one thread and deterministic algorithms, so the same spec on
the same software gives byte-identical weights. The folder is a ``torch``
artifact: ``config.json`` + ``model.safetensors`` + ``digits_cnn.json`` (spec,
data hash, split sizes, losses, eval accuracy).

Cached under ``zoo_dir()`` (``$INFEROPT_ZOO_DIR`` or ``~/.cache/inferopt/zoo``)
in a folder named by a hash of ``ZOO_VERSION``, the spec and the data, built
under a file lock into a temporary folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from optimizers.errors import RecipeError

# The lock and staging helpers are the tiny LM's: one cache discipline for every built zoo model.
from optimizers.zoo.tiny_lm import _lock, _staging, zoo_dir

ZOO_VERSION = "digits-cnn-v1"
KEY = "digits-cnn"
#: Built models must reach this accuracy on the eval split, or the build fails (nothing cached).
MIN_EVAL_ACCURACY = 0.97
RECORD_FILE = "digits_cnn.json"

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class DigitsCNNSpec:
    """Architecture and training schedule (all part of the cache key)."""

    channels: tuple[int, ...] = (16, 32)
    hidden: int = 64
    steps: int = 600
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1


SPEC = DigitsCNNSpec()


def data_sha256() -> str:
    """Hash of the three splits' content hashes (and labels): changes if the bundled data does."""
    from optimizers.evaluation.images import SPLITS, digits_image_split

    digest = hashlib.sha256()
    for name in SPLITS:
        data = digits_image_split(name)
        digest.update(name.encode())
        digest.update("".join(data.hashes).encode())
        digest.update(data.labels.tobytes())
    return digest.hexdigest()


def cache_key(spec: DigitsCNNSpec = SPEC) -> str:
    payload = json.dumps({"version": ZOO_VERSION, "spec": asdict(spec), "data": data_sha256()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def model_dir(spec: DigitsCNNSpec = SPEC) -> Path:
    """Final folder of the cached build (it may not exist yet)."""
    return zoo_dir() / f"{KEY}-{cache_key(spec)}"


def _is_complete(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() and (folder / RECORD_FILE).is_file()


def digits_cnn_folder(*, build: bool = True, progress: Progress | None = None) -> Path:
    """Folder of ``zoo:digits-cnn``, training it on first use (seconds).

    With ``build=False`` a model not built yet raises ``RecipeError`` instead.
    """
    folder = model_dir()
    if _is_complete(folder):
        return folder
    if not build:
        raise RecipeError(
            f"the demo model zoo:{KEY} is not built yet: run `python manage.py setup_demo` "
            f"(or `python -m optimizers zoo build {KEY}`); it trains in seconds on the CPU"
        )
    return build_digits_cnn(progress=progress)


def build_digits_cnn(spec: DigitsCNNSpec = SPEC, *, progress: Progress | None = None) -> Path:
    """Train (or reuse) the digits CNN for ``spec`` and return its folder (see module docstring).

    ``progress(fraction, message)`` gets 0..1. Raises ``RecipeError`` if the
    trained model misses ``MIN_EVAL_ACCURACY`` (nothing is cached then).
    """
    import torch

    from optimizers.evaluation.images import digits_image_split
    from optimizers.models import save_torch_module
    from optimizers.models.digits_cnn import build, default_config
    from optimizers.models.training import TrainSettings, accuracy, deterministic_threads, train_classifier

    report = progress or (lambda fraction, message: None)
    final = model_dir(spec)
    if _is_complete(final):
        return final
    with _lock(final.name):
        if _is_complete(final):
            return final
        for stale in final.parent.glob(f".{final.name}.*"):  # a build killed before it could clean up
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        train, calibration, evaluation = (digits_image_split(name) for name in ("train", "calibration", "eval"))
        config = default_config(channels=list(spec.channels), hidden=spec.hidden)
        report(0.0, f"zoo:{KEY}: training on {len(train)} digits images ({spec.steps} steps)")
        settings = TrainSettings(
            steps=spec.steps,
            learning_rate=spec.learning_rate,
            batch_size=spec.batch_size,
            weight_decay=spec.weight_decay,
            seed=spec.seed,
        )

        def on_step(step: int, steps: int, loss: float) -> None:
            if step % 50 == 0 or step == steps:
                report(0.95 * step / steps, f"step {step} of {steps}, loss {loss:.3f}")

        with deterministic_threads(spec.threads):
            torch.manual_seed(spec.seed)
            model = build(config)
            losses = train_classifier(model, train.images, train.labels, settings, on_step=on_step)
            model.eval()
            eval_accuracy = accuracy(model, evaluation.images, evaluation.labels)
            train_accuracy = accuracy(model, train.images, train.labels)
        if eval_accuracy < MIN_EVAL_ACCURACY:
            raise RecipeError(
                f"zoo:{KEY} reached {eval_accuracy:.3f} eval accuracy, below {MIN_EVAL_ACCURACY}; not cached"
            )
        with _staging(final) as staging:
            save_torch_module(model, config, staging)
            record = {
                "zoo_version": ZOO_VERSION,
                "spec": asdict(spec),
                "data_sha256": data_sha256(),
                "split_images": {"train": len(train), "calibration": len(calibration), "eval": len(evaluation)},
                "parameters": sum(p.numel() for p in model.parameters()),
                "final_train_loss": round(sum(losses[-20:]) / len(losses[-20:]), 5),
                "train_accuracy": round(train_accuracy, 5),
                "eval_accuracy": round(eval_accuracy, 5),
            }
            (staging / RECORD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        report(1.0, f"zoo:{KEY} ready: eval accuracy {eval_accuracy:.4f} on {len(evaluation)} held-out images")
    return final


def build_record() -> dict:
    """The ``digits_cnn.json`` of the built model (spec, data hash, accuracy)."""
    return json.loads((digits_cnn_folder(build=False) / RECORD_FILE).read_text())


__all__ = [
    "KEY",
    "MIN_EVAL_ACCURACY",
    "SPEC",
    "DigitsCNNSpec",
    "build_digits_cnn",
    "build_record",
    "cache_key",
    "digits_cnn_folder",
    "model_dir",
]
