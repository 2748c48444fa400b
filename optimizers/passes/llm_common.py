"""What the LLM weight-quantization passes share (``gptq``, ``awq``, ``w8a8``, ``int4_weight_only``).

- ``ModelShape`` / ``read_model_shape``: parameter count, layers and dtype read from
  ``config.json`` and the safetensors headers, without torch (usable in the web process).
- ``check_causal_lm``: refuse anything that is not an unquantized causal LM, with a message
  that says what the input is.
- ``estimate_resources`` and ``check_fits_worker``: the memory/time estimate shown before
  submission, and the rule that refuses a CPU worker when the estimate does not fit.
- ``calibration_windows``: calibration text (built-in split or a JSONL/text file), checked
  disjoint from the built-in evaluation split, tokenized and packed into fixed windows.
- ``staged_output``: a pass writes into a hidden sibling folder that is renamed into place
  only when complete, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError, RecipeError
from optimizers.passes.base import Preflight

#: Environment knob: longest a quantization pass may be estimated to take on a CPU worker.
CPU_TIME_BUDGET_ENV = "INFEROPT_CPU_PASS_TIME_BUDGET_S"
DEFAULT_CPU_TIME_BUDGET_S = 3600.0  # the default job soft time limit

#: Fewer calibration tokens than this cannot estimate activation statistics meaningfully.
MIN_CALIBRATION_TOKENS = 128

#: ``calibration_dataset`` value for the built-in calibration split of the tiny-LM corpus.
BUILTIN_CALIBRATION = "zoo:tiny-lm-calibration"

_MAX_HEADER_BYTES = 100 * 1024 * 1024
_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2}
_DTYPE_BYTES |= {"U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}


# --------------------------------------------------------------------------- model shape


@dataclass(frozen=True)
class ModelShape:
    """What the estimates need to know about a model, read without loading it."""

    parameters: int
    stored_bytes: int
    num_layers: int
    hidden_size: int
    model_type: str
    architectures: tuple[str, ...]
    quant_method: str | None

    @property
    def stored_bytes_per_parameter(self) -> float:
        return self.stored_bytes / max(self.parameters, 1)


def read_model_shape(folder: Path) -> ModelShape:
    """``ModelShape`` of an ``hf`` folder; ``PreflightError`` when config or weights are unreadable."""
    folder = Path(folder)
    config = read_config(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise PreflightError(f"{folder.name} has no .safetensors weights")
    parameters = stored = 0
    for file in files:
        for name, entry in safetensors_header(file).items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            count = 1
            for dim in entry.get("shape", []):
                count *= int(dim)
            parameters += count
            stored += count * _DTYPE_BYTES.get(str(entry.get("dtype")), 4)
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    quantization = config.get("quantization_config")
    return ModelShape(
        parameters=parameters,
        stored_bytes=stored,
        num_layers=int(text_config.get("num_hidden_layers") or text_config.get("n_layer") or 1),
        hidden_size=int(text_config.get("hidden_size") or text_config.get("n_embd") or 1),
        model_type=str(config.get("model_type") or ""),
        architectures=tuple(name for name in config.get("architectures") or [] if isinstance(name, str)),
        quant_method=str(quantization.get("quant_method")) if isinstance(quantization, dict) else None,
    )


def read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PreflightError(f"{Path(folder).name}: config.json is missing or unreadable ({error})") from None
    if not isinstance(config, dict):
        raise PreflightError(f"{Path(folder).name}: config.json is not a JSON object")
    return config


def safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        if not 0 < length <= _MAX_HEADER_BYTES:
            raise PreflightError(f"{path.name} is not a readable safetensors file")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PreflightError(f"{path.name} has a corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise PreflightError(f"{path.name} has a corrupt safetensors header")
    return header


def check_causal_lm(pass_name: str, artifact: ModelArtifact) -> ModelShape:
    """The input's ``ModelShape`` if it is an unquantized causal LM in ``hf`` format; else ``PreflightError``."""
    if artifact.task != "causal-lm":
        raise PreflightError(
            f"{pass_name} quantizes causal language models (task causal-lm, e.g. zoo:tiny-lm or a "
            f"…ForCausalLM folder); the input '{artifact.name}' is a {artifact.task} model"
        )
    if artifact.format != "hf":
        raise PreflightError(
            f"{pass_name} takes a Hugging Face folder (hf); the input '{artifact.name}' is {artifact.format}"
        )
    shape = read_model_shape(artifact.folder)
    if not any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in shape.architectures):
        found = ", ".join(shape.architectures) or "none"
        raise PreflightError(
            f"{pass_name} needs a causal LM (config.json architectures ending in ForCausalLM); "
            f"'{artifact.name}' declares {found}"
        )
    if shape.quant_method:
        raise PreflightError(
            f"'{artifact.name}' is already quantized ({shape.quant_method}); quantize the original "
            "full-precision model instead"
        )
    return shape


def linear_layers(folder: Path) -> dict[str, tuple[int, int]]:
    """``{module name: (in_features, out_features)}`` of every ``nn.Linear``, built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except ValueError as error:
        raise PreflightError(f"{Path(folder).name} cannot be built as a causal LM: {error}") from None
    return {
        name: (module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def check_group_size(pass_name: str, folder: Path, group_size: int | None, ignore: list[str]) -> int:
    """Refuse a group size that does not divide every targeted Linear's input width; return their count."""
    layers = {name: shape for name, shape in linear_layers(folder).items() if not is_ignored(name, ignore)}
    if not layers:
        raise PreflightError(f"{pass_name}: no Linear layers left to quantize after ignore={ignore}")
    if group_size:
        bad = [f"{name} ({width})" for name, (width, _) in layers.items() if width % group_size]
        if bad:
            raise PreflightError(
                f"{pass_name}: group_size {group_size} does not divide the input width of "
                f"{len(bad)} Linear layers, e.g. {', '.join(bad[:3])}; choose a smaller group size"
            )
    return len(layers)


def is_ignored(name: str, ignore: list[str]) -> bool:
    """llm-compressor's matching: ``re:<regex>`` or an exact name or a name suffix after a dot."""
    import re

    for pattern in ignore:
        if pattern.startswith("re:"):
            if re.match(pattern[3:], name):
                return True
        elif name == pattern or name.endswith("." + pattern):
            return True
    return False


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class CostModel:
    """Rough per-technique constants for ``estimate_resources``.

    ``forward_passes``: full-model forward passes over the calibration tokens
    (llm-compressor's sequential pipeline calibrates then propagates each layer:
    about 2, plus smoothing or AWQ's grid search); ``memory_factor``: working
    copies of the FP32 weights held at the peak (model, quantized copy, Hessians).
    """

    forward_passes: float
    memory_factor: float
    fixed_seconds: float
    seconds_per_layer: float


# Effective rates, not peaks. CPU: FP32 on the 2-core development machine (the tiny LM's
# training ran at ~1.4e10 FLOP/s on a loaded machine). GPU: llm-compressor calibrates one
# layer at a time at batch 1, far from a GPU's peak. On the tiny LM fixed costs dominate
# (gptq 8×64 tokens: ~18 s on the CPU, ~6 s on an H100); FLOP terms dominate for 1B+ models.
CPU_FLOPS = 2.0e10
GPU_FLOPS = 2.0e12
GPU_SPEEDUP_OF_FIXED = 4.0
PROCESS_BASE_MB = 900.0
ACTIVATION_COPIES = 12


def estimate_resources(
    cost: CostModel, shape: ModelShape, *, tokens: int, on_gpu: bool, notes: list[str] | None = None
) -> Preflight:
    """Memory and time estimate for one pass over ``tokens`` calibration tokens.

    memory ≈ base + parameters × 4 bytes × memory_factor + tokens × hidden × 4 bytes × copies
    seconds ≈ fixed + layers × per-layer + forward_passes × 2 × parameters × tokens / FLOP/s
    On a GPU worker the fixed terms shrink by ``GPU_SPEEDUP_OF_FIXED`` and FLOP/s is ``GPU_FLOPS``.
    These are deliberately rough (±2×): enough to refuse what cannot fit, and to show a user
    minutes versus hours before submitting.
    """
    weights_mb = shape.parameters * 4 * cost.memory_factor / 1e6
    activations_mb = tokens * shape.hidden_size * 4 * ACTIVATION_COPIES / 1e6
    flops = cost.forward_passes * 2.0 * shape.parameters * tokens
    fixed = cost.fixed_seconds + cost.seconds_per_layer * shape.num_layers
    seconds = fixed / GPU_SPEEDUP_OF_FIXED + flops / GPU_FLOPS if on_gpu else fixed + flops / CPU_FLOPS
    device = "GPU" if on_gpu else "CPU"
    summary = (
        f"{shape.parameters / 1e6:.1f}M parameters, {tokens} calibration tokens: "
        f"about {_human_seconds(seconds)} and {(PROCESS_BASE_MB + weights_mb + activations_mb) / 1024:.1f} GiB "
        f"of memory on a {device} worker"
    )
    return Preflight(
        estimated_seconds=round(seconds, 1),
        estimated_memory_mb=round(PROCESS_BASE_MB + weights_mb + activations_mb, 1),
        notes=[summary, *(notes or [])],
    )


def check_fits_worker(pass_name: str, estimate: Preflight, *, on_gpu: bool) -> None:
    """On a CPU worker, refuse an estimate above available memory or the CPU time budget."""
    if on_gpu:
        return
    available = available_memory_mb()
    if available is not None and (estimate.estimated_memory_mb or 0) > available:
        raise PreflightError(
            f"{pass_name} needs about {estimate.estimated_memory_mb / 1024:.1f} GiB on this CPU worker but only "
            f"{available / 1024:.1f} GiB is available; run it on a GPU worker or a larger machine"
        )
    budget = cpu_time_budget_s()
    if (estimate.estimated_seconds or 0) > budget:
        raise PreflightError(
            f"{pass_name} would take about {_human_seconds(estimate.estimated_seconds or 0)} on this CPU worker, "
            f"over its budget of {_human_seconds(budget)} ({CPU_TIME_BUDGET_ENV}); run it on a GPU worker or "
            "lower num_calibration_samples / max_seq_length"
        )


def cpu_time_budget_s() -> float:
    raw = os.environ.get(CPU_TIME_BUDGET_ENV, "")
    try:
        return float(raw) if raw.strip() else DEFAULT_CPU_TIME_BUDGET_S
    except ValueError:
        return DEFAULT_CPU_TIME_BUDGET_S


def available_memory_mb() -> float | None:
    """Memory the kernel says a new allocation can get (``MemAvailable``), in MB; None if unknown."""
    try:
        import psutil

        return psutil.virtual_memory().available / 1e6
    except ImportError:  # pragma: no cover - psutil comes with llm-compressor
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


def _human_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------- calibration


@dataclass
class CalibrationWindows:
    """Token windows for calibration, plus where they came from."""

    source: str
    input_ids: list[list[int]]
    texts_used: int
    total_tokens: int
    notes: list[str] = field(default_factory=list)


def load_calibration_texts(reference: str | None) -> tuple[str, list[str]]:
    """(name, texts) for a ``calibration_dataset`` value.

    ``None`` or ``zoo:tiny-lm-calibration``: the calibration split of the tiny-LM corpus.
    A ``.jsonl`` file: one ``{"text": ...}`` per line. Any other file: plain UTF-8 text,
    paragraphs separated by blank lines. The calibration set is checked disjoint from the
    built-in evaluation split (``check_disjoint``).
    """
    from optimizers.evaluation.datasets import TextDataset, check_disjoint

    if reference is None or reference == BUILTIN_CALIBRATION:
        name, texts = BUILTIN_CALIBRATION, builtin_texts("calibration")
    elif reference.startswith("zoo:"):
        raise PreflightError(f"unknown calibration set '{reference}'; available: {BUILTIN_CALIBRATION}")
    else:
        name, texts = _file_texts(Path(reference))
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise PreflightError(f"calibration set {name} has no text")
    try:
        check_disjoint(TextDataset(name=name, texts=texts), TextDataset("eval", builtin_texts("eval")))
    except RecipeError as error:
        raise PreflightError(str(error)) from None
    return name, texts


def builtin_texts(split: str) -> list[str]:
    """Documents of one split of the tiny-LM corpus (the causal-lm evaluator scores ``eval``)."""
    from optimizers.zoo.tiny_lm import corpus_splits

    return corpus_splits()[split]


def _file_texts(path: Path) -> tuple[str, list[str]]:
    from optimizers.evaluation.datasets import load_jsonl

    if not path.is_file():
        raise PreflightError(f"calibration file not found: {path.name}")
    if path.suffix == ".jsonl":
        try:
            return path.name, load_jsonl(path).texts
        except RecipeError as error:
            raise PreflightError(f"calibration set {path.name}: {error}") from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise PreflightError(f"calibration file {path.name} is not UTF-8 text") from None
    return path.name, [block.strip() for block in text.split("\n\n")]


def calibration_windows(
    tokenizer: Any, name: str, texts: list[str], *, samples: int, seq_len: int
) -> CalibrationWindows:
    """Pack ``texts`` into at most ``samples`` windows of ``seq_len`` tokens (BOS first).

    The texts are tokenized in order and joined by EOS into one stream that is cut
    into windows, so short paragraphs still fill whole windows. ``PreflightError``
    when the stream holds fewer than ``MIN_CALIBRATION_TOKENS`` tokens.
    """
    bos = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id
    body = seq_len - (1 if bos is not None else 0)
    stream: list[int] = []
    used = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        if not ids:
            continue
        stream.extend(ids)
        if eos is not None:
            stream.append(eos)
        used += 1
        if len(stream) >= samples * body:
            break
    if len(stream) < MIN_CALIBRATION_TOKENS:
        raise PreflightError(
            f"calibration set {name} is too short: {len(stream)} tokens, at least {MIN_CALIBRATION_TOKENS} needed"
        )
    windows = [stream[start : start + body] for start in range(0, len(stream), body)][:samples]
    if len(windows) > 1 and len(windows[-1]) < body:
        windows.pop()  # a ragged tail would need padding; drop it
    if bos is not None:
        windows = [[bos, *window] for window in windows]
    notes = []
    if len(windows) < samples:
        notes.append(f"calibration set {name} fills {len(windows)} of the {samples} requested windows")
    total = sum(len(window) for window in windows)
    return CalibrationWindows(name, windows, used, total, notes)


# --------------------------------------------------------------------------- output


@contextmanager
def staged_output(work_dir: Path) -> Iterator[Path]:
    """Yield a hidden sibling folder; on success it replaces ``work_dir``, on error it is removed."""
    work_dir = Path(work_dir)
    staging = work_dir.with_name(f".{work_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if work_dir.exists():
        shutil.rmtree(work_dir)
    staging.rename(work_dir)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a requirement
        return False
    return bool(torch.cuda.is_available())
