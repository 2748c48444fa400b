"""Small, deterministic supervised training loops for the ``torch`` classifiers (CPU, seconds).

Used by the zoo build and by passes that fine-tune (pruning, 2:4 sparsity, QAT).
Batches are drawn from a seeded ``torch.Generator`` so the same seed, data
and thread count give the same weights.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: ``on_step(step, steps, loss)`` after every optimizer step (1-based ``step``).
StepCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    learning_rate: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0
    #: Cosine decay to 10% of ``learning_rate`` over ``steps`` (constant when False).
    cosine: bool = True


@contextlib.contextmanager
def deterministic_threads(threads: int = 1) -> Iterator[None]:
    """Fixed thread count and deterministic algorithms while training (restored afterwards)."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)


def train_classifier(
    module: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    settings: TrainSettings,
    *,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    parameters: list[nn.Parameter] | None = None,
    set_train_mode: bool = True,
    threads: int | None = 1,
) -> list[float]:
    """Train ``module`` (logits out) with cross-entropy and AdamW; returns the loss of every step.

    ``parameters`` defaults to ``module.parameters()``. ``should_stop()`` is
    checked every step; when it turns true the loop stops early (callers that
    honour cancellation raise afterwards). The module is left in train mode
    (``set_train_mode=False`` leaves the mode to the caller: exported graphs
    switch mode with torchao's ``move_exported_model_to_train`` instead).
    ``threads`` (default 1, restored afterwards; None leaves torch's setting): these
    models are tiny, and on a busy machine thread barriers cost more than the arithmetic.
    """
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _train(module, images, labels, settings, on_step, should_stop, parameters, set_train_mode)
    finally:
        torch.set_num_threads(previous_threads)


def _train(module, images, labels, settings, on_step, should_stop, parameters, set_train_mode) -> list[float]:
    if settings.steps < 0:
        raise ValueError("steps must be ≥ 0")
    data = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    targets = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    count = len(targets)
    if count == 0:
        raise ValueError("no training data")
    batch = min(settings.batch_size, count)
    generator = torch.Generator().manual_seed(settings.seed)
    params = list(parameters) if parameters is not None else list(module.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    if set_train_mode:
        module.train()
    order, position = torch.randperm(count, generator=generator), 0
    losses: list[float] = []
    for step in range(settings.steps):
        if should_stop is not None and should_stop():
            break
        if position + batch > count:
            order, position = torch.randperm(count, generator=generator), 0
        index = order[position : position + batch]
        position += batch
        if settings.cosine and settings.steps > 1:
            fraction = step / (settings.steps - 1)
            rate = settings.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * fraction)))
            for group in optimizer.param_groups:
                group["lr"] = rate
        loss = loss_fn(module(data[index]), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, settings.steps, losses[-1])
    return losses


def predict_logits(
    module: nn.Module | Callable, images: np.ndarray, *, batch_size: int = 256, set_eval_mode: bool = True
) -> np.ndarray:
    """Logits (N, classes) float32 of ``module`` on ``images`` (inference mode, batched)."""
    if set_eval_mode and isinstance(module, nn.Module):
        module.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32))
            outputs.append(module(chunk).float().numpy())
    return np.concatenate(outputs, axis=0)


def accuracy(
    module: nn.Module | Callable, images: np.ndarray, labels: np.ndarray, *, set_eval_mode: bool = True
) -> float:
    """Top-1 accuracy of ``module`` on (images, labels)."""
    logits = predict_logits(module, images, set_eval_mode=set_eval_mode)
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def curve(losses: list[float], points: int = 50) -> list[dict[str, float]]:
    """A training-loss curve for reports: ``[{"step": n, "loss": x}, ...]`` (at most ``points``, last step kept).

    Each point is the mean loss of the steps since the previous point, so a
    thinned curve does not hide noise as a spike.
    """
    if not losses:
        return []
    every = max(1, math.ceil(len(losses) / points))
    result, previous = [], 0
    for end in range(every, len(losses) + every, every):
        end = min(end, len(losses))
        result.append({"step": end, "loss": round(float(np.mean(losses[previous:end])), 5)})
        previous = end
    return result
