"""GPU check: a short benchmark on whatever GPU is present, printed as one summary table.

Run by ``scripts/gpu-check.sh`` (``make gpu-check``) after the ``gpu``-marked tests. Rows:

- PyTorch FP32 / FP16 / BF16 on a small BERT encoder (MiniLM-L6's shape, random weights,
  built from a config, so no download or zoo build), with ``eager`` vs ``sdpa`` attention and
  ``torch.compile``: operator fusion shows up as measured rows;
- the same kinds of rows through the product's own path: a job benchmark's runtime variants
  (``benchmark.variants``, ``optimizers.benchmark.variants``) on that encoder saved as a
  Hugging Face folder with a small local tokenizer, each variant in its own process;
- 2:4 semi-structured sparsity (``torch.sparse.to_sparse_semi_structured``) on a plain
  FP16 Linear, dense vs sparse;
- ONNX Runtime CUDA / TensorRT execution providers, if ``onnxruntime-gpu`` is installed;
- a TensorRT FP16 engine build + benchmark, if ``tensorrt`` imports.

Each check that cannot run here (no CUDA, a missing library, a too-old GPU, the time budget)
is a row that says ``skipped`` and why; the script never fails for a missing library. It
imports no Django (and pydantic only in the job-variant and TensorRT rows, which skip without
it), so it runs with the GPU image's own Python. ``--smoke`` runs a tiny model for a few iterations (used by CI on CPU).
Total time is bounded by ``--budget-s`` (default 420 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: MiniLM-L6-v2's shape (22.7M parameters): hidden 384, 6 layers, 12 heads.
ENCODER = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}
SMOKE_ENCODER = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


@dataclass
class Row:
    """One line of the summary table."""

    check: str
    variant: str
    status: str = "ok"  # ok, skipped, failed
    p50_ms: float | None = None
    ratio: float | None = None  # speedup against the check's baseline row (>1 is faster)
    note: str = ""


@dataclass
class Settings:
    smoke: bool
    budget_s: float
    batch: int
    seq: int
    iterations: int
    warmup: int


def format_table(rows: list[Row], header: str = "") -> str:
    """The summary table: check, variant, status, p50 (ms), speedup, note (pure; unit-tested)."""
    columns = ["check", "variant", "status", "p50 ms", "speedup", "note"]
    cells = [
        [
            row.check,
            row.variant,
            row.status,
            "" if row.p50_ms is None else f"{row.p50_ms:.3f}",
            "" if row.ratio is None else f"{row.ratio:.2f}x",
            row.note,
        ]
        for row in rows
    ]
    widths = [max(len(columns[i]), *(len(cell[i]) for cell in cells)) if cells else len(columns[i]) for i in range(6)]
    widths[-1] = len(columns[-1])  # the note is last and free-length

    def line(values: list[str]) -> str:
        return " | ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

    out = [header] if header else []
    out += [line(columns), "-+-".join("-" * width for width in widths)]
    out += [line(cell) for cell in cells]
    return "\n".join(out)


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _timer(device: str) -> Callable[[Callable[[], Any], int, int], float]:
    """Median milliseconds of ``fn`` over ``iterations`` runs after ``warmup`` (CUDA events on a GPU)."""
    import torch

    def cuda_time(fn: Callable[[], Any], iterations: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(iterations):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    def cpu_time(fn: Callable[[], Any], iterations: int, warmup: int) -> float:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    return cuda_time if device == "cuda" else cpu_time


def environment_rows() -> tuple[list[Row], str]:
    """Probe rows (no pydantic: only the stdlib helpers of optimizers.capabilities) and a one-line header."""
    from optimizers.capabilities import cpu_info, gpu_info, library_versions, onnxruntime_providers

    gpus = gpu_info()
    cpu = cpu_info()
    versions = library_versions()
    providers = onnxruntime_providers()
    if gpus:
        gpu = gpus[0]
        major, minor = gpu["compute_capability"]
        where = f"GPU: {gpu['name']} (compute capability {major}.{minor}, {gpu['memory_mb']} MB)"
    else:
        where = f"no CUDA GPU; CPU: {cpu['model']} ({cpu['logical_cores']} logical cores)"
    libs = ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
    rows = [
        Row("environment", "libraries", note=libs or "none tracked"),
        Row("environment", "onnxruntime providers", note=", ".join(providers) or "onnxruntime not installed"),
    ]
    return rows, where


def _build_encoder(settings: Settings, attention: str, dtype: Any, device: str) -> Any:
    import torch
    from transformers import AutoModel, BertConfig

    shape = SMOKE_ENCODER if settings.smoke else ENCODER
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, **shape)
    torch.manual_seed(0)  # same weights for every variant, so outputs can be compared
    model = AutoModel.from_config(config, attn_implementation=attention)
    return model.eval().to(device=device, dtype=dtype)


#: Words for the local WordPiece vocabulary of ``write_random_encoder`` (no tokenizer download).
_VOCAB_WORDS = (
    "performance is measured as ratios against the baseline on the same machine in run with each variant timed "
    "its own process because thread pools keep spinning after a the of and to in for"
).split()


def write_random_encoder(folder: Path, shape: dict[str, int] | None = None) -> Path:
    """Save a random BERT encoder (MiniLM-L6's shape by default) and a small WordPiece tokenizer to ``folder``.

    A Hugging Face folder the product can load like any uploaded model (``format: hf``,
    ``feature-extraction``), built from a config with seed 0, so a GPU machine needs no download.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:!?'-()")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{ch}" for ch in letters)]
    vocab += [word for word in dict.fromkeys(_VOCAB_WORDS) if word not in vocab]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), max_position_embeddings=512, **(shape or ENCODER))
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(folder)
    return folder


#: What the job-variant rows ask for, as a recipe would (``benchmark.variants``).
#: One compiled variant only: each compilation costs a minute of the check's budget.
JOB_VARIANTS = ["fp16", "bf16", "eager_attention", "sdpa", "fp16+flash_attention", "fp16+torch_compile"]


def job_variant_rows(settings: Settings, device: str, budget: Budget, folder: Path) -> list[Row]:
    """A job benchmark's runtime variants (``measure_runtime_variants``) on the random encoder folder."""
    label = f"job variants b{settings.batch}×s{settings.seq}"
    if importlib.util.find_spec("pydantic") is None:
        return [Row(label, "benchmark.variants", "skipped", note="pydantic not installed (carry its wheel)")]
    if budget.left() < (60 if settings.smoke else 120):
        return [Row(label, "benchmark.variants", "skipped", note="time budget")]
    from optimizers.artifacts import ModelArtifact
    from optimizers.benchmark.variants import measure_runtime_variants
    from optimizers.recipe import BenchmarkSettings

    model_dir = write_random_encoder(folder / "encoder", SMOKE_ENCODER if settings.smoke else ENCODER)
    artifact = ModelArtifact.from_folder(
        model_dir, name="baseline", format="hf", task="feature-extraction", write_metadata=False
    )
    names = ["sdpa", "fp16"] if settings.smoke else JOB_VARIANTS  # smoke: one child, one skip
    bench = BenchmarkSettings(
        batch_sizes=[settings.batch],
        seq_len=settings.seq,
        warmup=settings.warmup,
        min_iterations=settings.iterations,
        min_seconds=0.5 if not settings.smoke else 0.0,
        variants=names,
    )
    reports = measure_runtime_variants(artifact, bench, timeout_s=max(budget.left(), 60))
    key = str(settings.batch)
    p50 = {report.name: report.benchmark[key].p50_ms for report in reports if key in report.benchmark}
    if device != "cuda":  # CPU rows are against the baseline's own eager run: time it here too
        from optimizers.benchmark.isolated import benchmark_isolated

        stats, _ = benchmark_isolated(artifact, bench.model_copy(update={"variants": []}))
        p50["baseline"] = stats[key].p50_ms
        rows = [Row(label, "baseline (default attention)", p50_ms=p50["baseline"], ratio=1.0, note="cpu")]
    else:
        rows = []
    for report in reports:
        if report.status != "measured":
            rows.append(Row(label, report.name, report.status, note=report.reason[:160]))
            continue
        reference = p50.get(report.reference)
        ms = report.benchmark[key].p50_ms
        notes = [report.device.split(":", 1)[0], f"vs {report.reference}"]
        if report.cosine_to_fp32 is not None:
            notes.append(f"cosine to fp32 {report.cosine_to_fp32:.5f}")
        if report.first_call_s is not None and "torch_compile" in report.name:
            notes.append(f"first call {report.first_call_s:.1f} s")
        rows.append(
            Row(label, report.name, p50_ms=ms, ratio=reference / ms if reference else None, note=", ".join(notes))
        )
    return rows


def encoder_rows(settings: Settings, device: str, budget: Budget) -> list[Row]:
    """FP32/FP16/BF16 × eager/sdpa, and torch.compile, on the random MiniLM-shaped encoder."""
    import torch

    rows: list[Row] = []
    timer = _timer(device)
    ids = torch.randint(0, 30522, (settings.batch, settings.seq), device=device)
    mask = torch.ones_like(ids)
    label = f"encoder b{settings.batch}×s{settings.seq}"
    reference = None
    baseline_ms = None
    variants = [("fp32", torch.float32, "eager"), ("fp32", torch.float32, "sdpa")]
    if device == "cuda":
        variants += [
            ("fp16", torch.float16, "eager"),
            ("fp16", torch.float16, "sdpa"),
            ("bf16", torch.bfloat16, "sdpa"),
        ]
    else:
        rows.append(Row(label, "fp16 / bf16", "skipped", note="no CUDA GPU: half precision is timed on a GPU only"))
    for name, dtype, attention in variants:
        if budget.left() < 30:
            rows.append(Row(label, f"{name} {attention}", "skipped", note="time budget"))
            continue
        try:
            model = _build_encoder(settings, attention, dtype, device)
            with torch.inference_mode():
                ms = timer(lambda m=model: m(input_ids=ids, attention_mask=mask), settings.iterations, settings.warmup)
                output = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            if reference is None:
                reference, baseline_ms = output, ms
            cosine = torch.nn.functional.cosine_similarity(output.flatten(), reference.flatten(), dim=0).item()
            note = f"cosine to fp32 eager {cosine:.5f}"
            rows.append(Row(label, f"{name} {attention}", p50_ms=ms, ratio=baseline_ms / ms, note=note))
            del model
        except Exception as error:
            rows.append(Row(label, f"{name} {attention}", "failed", note=_short(error)))
    rows += _compile_row(settings, device, budget, ids, mask, baseline_ms, label)
    return rows


def _compile_row(settings, device, budget, ids, mask, baseline_ms, label) -> list[Row]:
    import torch

    name = "fp16" if device == "cuda" else "fp32"
    if settings.smoke:
        return [Row(label, f"{name} sdpa + torch.compile", "skipped", note="--smoke (compilation takes minutes)")]
    if device != "cuda":
        return [Row(label, f"{name} sdpa + torch.compile", "skipped", note="no CUDA GPU")]
    if budget.left() < 120:
        return [Row(label, f"{name} sdpa + torch.compile", "skipped", note="time budget")]
    try:
        model = _build_encoder(settings, "sdpa", torch.float16, device)
        compiled = torch.compile(model)
        started = time.monotonic()
        with torch.inference_mode():
            compiled(input_ids=ids, attention_mask=mask)
            first_s = time.monotonic() - started
            ms = _timer(device)(
                lambda: compiled(input_ids=ids, attention_mask=mask), settings.iterations, settings.warmup
            )
        ratio = baseline_ms / ms if baseline_ms else None
        return [Row(label, "fp16 sdpa + torch.compile", p50_ms=ms, ratio=ratio, note=f"first call {first_s:.1f} s")]
    except Exception as error:
        return [Row(label, "fp16 sdpa + torch.compile", "failed", note=_short(error))]


def sparsity_rows(settings: Settings, device: str, budget: Budget) -> list[Row]:
    """Dense vs 2:4 semi-structured FP16 Linear (Ampere+ CUDA only)."""
    import torch

    label = "2:4 sparsity Linear"
    if device != "cuda":
        return [
            Row(label, "dense vs 2:4", "skipped", note="no CUDA GPU (semi-structured sparse kernels are CUDA only)")
        ]
    if torch.cuda.get_device_capability() < (8, 0):
        return [Row(label, "dense vs 2:4", "skipped", note="needs compute capability ≥ 8.0")]
    if budget.left() < 30:
        return [Row(label, "dense vs 2:4", "skipped", note="time budget")]
    try:
        from torch.sparse import to_sparse_semi_structured

        features, tokens = (4096, 4096) if not settings.smoke else (256, 256)
        weight = torch.randn(features, features, device="cuda", dtype=torch.float16)
        mask = torch.tensor([1, 1, 0, 0], device="cuda", dtype=torch.bool).repeat(features, features // 4)
        pruned = weight * mask
        inputs = torch.randn(tokens, features, device="cuda", dtype=torch.float16)
        from torch.sparse import SparseSemiStructuredTensor

        timer = _timer("cuda")
        dense_ms = timer(lambda: torch.nn.functional.linear(inputs, pruned), 50, 10)
        shape = f"{tokens}×{features} · {features}×{features}"
        rows = [Row(label, f"dense fp16 {shape}", p50_ms=dense_ms, ratio=1.0)]
        # CUTLASS is PyTorch's default backend; cuSPARSELt the other (when PyTorch was built with it).
        for backend, force_cutlass in (("CUTLASS", True), ("cuSPARSELt", False)):
            try:
                SparseSemiStructuredTensor._FORCE_CUTLASS = force_cutlass
                sparse = to_sparse_semi_structured(pruned)
                sparse_ms = timer(lambda s=sparse: torch.nn.functional.linear(inputs, s), 50, 10)
                diff = (torch.nn.functional.linear(inputs, sparse) - torch.nn.functional.linear(inputs, pruned)).abs()
                note = f"max |diff| {diff.max().item():.3g}"
                rows.append(Row(label, f"2:4 {backend} fp16", p50_ms=sparse_ms, ratio=dense_ms / sparse_ms, note=note))
            except Exception as error:  # e.g. CUTLASS kernels exist for compute capability 8.x only
                rows.append(Row(label, f"2:4 {backend} fp16", "skipped", note=_short(error)))
        SparseSemiStructuredTensor._FORCE_CUTLASS = True
        if all(row.status == "skipped" for row in rows[1:]):
            rows.append(Row(label, "2:4 sparse fp16", "failed", note="no semi-structured backend ran here"))
        return rows
    except Exception as error:
        return [Row(label, "dense vs 2:4", "failed", note=_short(error))]


def _export_encoder(settings: Settings, folder: Path) -> Path:
    import torch

    class Encoder(torch.nn.Module):
        # transformers 5's forward takes more positional parameters than an exporter should guess at.
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    model = Encoder(_build_encoder(settings, "eager", torch.float32, "cpu"))
    ids = torch.randint(0, 30522, (settings.batch, settings.seq))
    path = folder / "model.onnx"
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids)),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={
            name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "last_hidden_state")
        },
        opset_version=17,
        dynamo=False,
    )
    return path


def onnxruntime_rows(settings: Settings, device: str, budget: Budget, folder: Path) -> list[Row]:
    label = "onnxruntime GPU providers"
    if importlib.util.find_spec("onnxruntime") is None:
        return [Row(label, "CUDA / TensorRT EP", "skipped", note="onnxruntime not installed")]
    import numpy as np
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p in available]
    if budget.left() < 30:
        return [Row(label, "CPU / CUDA / TensorRT EP", "skipped", note="time budget")]
    rows = []
    try:  # the CPU provider is the reference row, and proves the export path on any machine
        path = _export_encoder(settings, folder)
        ids = np.random.default_rng(0).integers(0, 30522, (settings.batch, settings.seq), dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        baseline = None
        for provider in ["CPUExecutionProvider", *(wanted if device == "cuda" else [])]:
            session = ort.InferenceSession(str(path), providers=[provider])
            ms = _timer("cpu")(lambda s=session: s.run(None, feed), settings.iterations, settings.warmup)
            baseline = baseline or ms
            rows.append(Row(label, f"fp32 {provider}", p50_ms=ms, ratio=baseline / ms))
    except Exception as error:
        rows.append(Row(label, "ONNX export + run", "failed", note=_short(error)))
    if device != "cuda":
        rows.append(Row(label, "CUDA / TensorRT EP", "skipped", note="no CUDA GPU"))
    elif not wanted:
        note = f"onnxruntime-gpu not installed (this build has: {', '.join(available)})"
        rows.append(Row(label, "CUDA / TensorRT EP", "skipped", note=note))
    return rows


def tensorrt_rows(settings: Settings, device: str, budget: Budget, folder: Path) -> list[Row]:
    label = "TensorRT engine"
    if importlib.util.find_spec("tensorrt") is None:
        return [
            Row(label, "fp16 build + run", "skipped", note="tensorrt not installed: never verified on this machine")
        ]
    if device != "cuda":
        return [Row(label, "fp16 build + run", "skipped", note="no CUDA GPU")]
    if budget.left() < 150:
        return [Row(label, "fp16 build + run", "skipped", note="time budget")]
    try:
        import numpy as np
        import tensorrt as trt
        import torch

        from optimizers.artifacts import ModelArtifact
        from optimizers.passes.tensorrt_build import (
            ENGINE_FILE,
            ENGINE_METADATA_FILE,
            build_engine,
            build_profile,
            engine_metadata,
            graph_inputs,
        )
        from optimizers.runtimes.tensorrt_gpu import TensorRTRuntime

        path = _export_encoder(settings, folder)
        profile = build_profile(graph_inputs(path), {}, seq_len=settings.seq, max_seq_len=max(settings.seq, 512))
        started = time.monotonic()
        plan = build_engine(path, profile, precision="fp16", workspace_bytes=2 << 30)
        build_s = time.monotonic() - started
        engine_dir = folder / "engine"
        engine_dir.mkdir()
        (engine_dir / ENGINE_FILE).write_bytes(plan)
        metadata = engine_metadata(
            gpu_name=torch.cuda.get_device_name(),
            compute_capability=torch.cuda.get_device_capability(),
            tensorrt_version=trt.__version__,
            cuda_version=torch.version.cuda,
            precision="fp16",
            profile=profile,
        )
        (engine_dir / ENGINE_METADATA_FILE).write_text(json.dumps(metadata))
        artifact = ModelArtifact(
            name="engine", path=str(engine_dir), format="tensorrt", task="feature-extraction", sha256="", size_bytes=1
        )
        runtime = TensorRTRuntime(artifact)
        ids = np.random.default_rng(0).integers(0, 30522, (settings.batch, settings.seq), dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        ms = _timer("cpu")(lambda: runtime.forward(feed), settings.iterations, settings.warmup)
        return [Row(label, "fp16 engine (host↔device copies included)", p50_ms=ms, note=f"build {build_s:.0f} s")]
    except Exception as error:
        return [Row(label, "fp16 build + run", "failed", note=_short(error))]


def llm_compressor_rows() -> list[Row]:
    if importlib.util.find_spec("llmcompressor") is None:
        return [Row("llm-compressor GPTQ", "W4A16 on CUDA", "skipped", note="llmcompressor not installed")]
    note = "run by tests/gpu/test_llm_quantization_gpu.py (pytest above)"
    return [Row("llm-compressor GPTQ", "W4A16 on CUDA", "skipped", note=note)]


def _short(error: BaseException) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= 160 else text[:159] + "…"


def run(settings: Settings) -> tuple[list[Row], str]:
    """All checks in order; never raises for a missing library or device."""
    budget = Budget(settings.budget_s)
    try:
        import torch
    except ImportError:
        return [Row("environment", "torch", "skipped", note="torch not installed: nothing to measure")], "no torch"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows, where = environment_rows()
    with tempfile.TemporaryDirectory(prefix="inferopt-gpu-check-") as temp:
        folder = Path(temp)
        for section in (
            lambda: encoder_rows(settings, device, budget),
            lambda: job_variant_rows(settings, device, budget, folder / "jobs"),
            lambda: sparsity_rows(settings, device, budget),
            lambda: onnxruntime_rows(settings, device, budget, folder / "ort"),
            lambda: tensorrt_rows(settings, device, budget, folder / "trt"),
            llm_compressor_rows,
        ):
            try:
                (folder / "ort").mkdir(exist_ok=True)
                (folder / "trt").mkdir(exist_ok=True)
                (folder / "jobs").mkdir(exist_ok=True)
                rows += section()
            except Exception as error:  # one broken check must not hide the others
                traceback.print_exc()
                rows.append(Row("check", "unexpected error", "failed", note=_short(error)))
    return rows, where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, few iterations (CI on a CPU)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new checks after this")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    settings = Settings(
        smoke=args.smoke,
        budget_s=args.budget_s,
        batch=2 if args.smoke else 32,  # b32×s128: enough work that kernels, not launches, dominate
        seq=16 if args.smoke else 128,
        iterations=3 if args.smoke else 50,
        warmup=1 if args.smoke else 10,
    )
    started = time.monotonic()
    rows, where = run(settings)
    header = f"InferOpt GPU check — {where} — {time.monotonic() - started:.0f} s"
    print(format_table(rows, header=header))
    if args.json:
        args.json.write_text(json.dumps({"where": where, "rows": [asdict(row) for row in rows]}, indent=2))
    return 1 if any(row.status == "failed" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
