"""``tensorrt_build``: ONNX → serialized TensorRT engine (FP32, FP16 or INT8), for one GPU architecture.

**Never run here.** TensorRT cannot be installed on the development machines (every PyPI
``tensorrt-cu*`` release is a stub that downloads from NVIDIA's index) and the lent GPU
image has no TensorRT either. ``TensorRTBuild.run`` and ``build_engine`` are written
against the TensorRT 10 Python API documentation (``trt.Builder``, ``create_network``,
``OnnxParser``, ``create_optimization_profile``, ``BuilderFlag.FP16/INT8``,
``set_memory_pool_limit(MemoryPoolType.WORKSPACE, …)``, ``create_timing_cache`` /
``set_timing_cache``, ``build_serialized_network``, ``IInt8EntropyCalibrator2``) and have
never executed. What *is* tested here are the pure parts this module exposes:

- ``graph_inputs`` / ``build_profile``: the optimization profile (``min``/``opt``/``max`` per
  input) from the recipe, validated against the ONNX graph's inputs (names exist, ranks
  match, static dimensions respected, ``1 ≤ min ≤ opt ≤ max``); dynamic inputs the recipe
  leaves out get the defaults (batch 1/8/32, sequence 1/seq_len/max_seq_len);
- ``engine_metadata`` / ``portability_problem``: what an engine records about where it was
  built (GPU name, compute capability, TensorRT and CUDA versions) and the check that
  refuses to benchmark or deploy it on another GPU (engines are not portable);
- ``clamp_batch_sizes``: the benchmark's batch sweep kept within the engine's profile.

An engine artifact is a folder: ``model.engine`` (the serialized plan), ``engine.json``
(``engine_metadata``) and the tokenizer files of its input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight, Requirements
from optimizers.passes.common import copy_companion_files

ENGINE_FILE = "model.engine"
ENGINE_METADATA_FILE = "engine.json"

#: Default profile ranges for dynamic dimensions: axis 0 is the batch, axis 1 the sequence.
DEFAULT_BATCH = (1, 8, 32)


class ShapeRange(BaseModel):
    """One input's optimization-profile shapes; every list has the input's rank."""

    model_config = ConfigDict(extra="forbid")

    min: list[int]
    opt: list[int]
    max: list[int]

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError(f"min, opt and max must have the same rank: {self.min}, {self.opt}, {self.max}")
        for axis, (low, mid, high) in enumerate(zip(self.min, self.opt, self.max, strict=True)):
            if low < 1:
                raise ValueError(f"axis {axis}: dimensions must be ≥ 1 (min is {low})")
            if not low <= mid <= high:
                raise ValueError(f"axis {axis}: need min ≤ opt ≤ max, got {low}, {mid}, {high}")
        return self


class TensorRTBuildConfig(PassConfig):
    precision: Literal["fp32", "fp16", "int8"] = Field(
        "fp16",
        description="fp16: BuilderFlag.FP16. int8: BuilderFlag.INT8 (+FP16 fallback); a QDQ model keeps its own "
        "scales, any other is calibrated with an entropy calibrator on the calibration split.",
    )
    shapes: dict[str, ShapeRange] = Field(
        default_factory=dict,
        description='Optimization profile per input, e.g. {"input_ids": {"min": [1, 16], "opt": [8, 128], '
        '"max": [32, 512]}}. Inputs left out get batch 1/8/32 and sequence 1/seq_len/max_seq_len.',
    )
    seq_len: int = Field(128, ge=1, description="Default opt sequence length for dynamic sequence axes.")
    max_seq_len: int = Field(512, ge=1, description="Default max sequence length for dynamic sequence axes.")
    workspace_mb: int = Field(2048, ge=64, le=262_144, description="MemoryPoolType.WORKSPACE limit.")
    calibration_samples: int = Field(128, ge=8, le=10_000, description="INT8 calibration texts (non-QDQ models).")
    reuse_timing_cache: bool = Field(True, description="Reuse this worker's timing cache across builds.")


# ---------------------------------------------------------------------------------------------
# Pure parts (tested without TensorRT)
# ---------------------------------------------------------------------------------------------

Dim = int | str | None  # static size, symbolic name, or unknown


def graph_inputs(onnx_path: Path) -> dict[str, list[Dim]]:
    """The ONNX graph's real inputs (initializers excluded) → their dims (int, symbol or None)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs: dict[str, list[Dim]] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims: list[Dim] = []
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(int(dim.dim_value))
            else:
                dims.append(dim.dim_param or None)
        inputs[value.name] = dims
    return inputs


def _default_range(name: str, dims: Sequence[Dim], seq_len: int, max_seq_len: int) -> ShapeRange:
    low, mid, high = [], [], []
    for axis, dim in enumerate(dims):
        if isinstance(dim, int):
            low.append(dim), mid.append(dim), high.append(dim)
        elif axis == 0:
            low.append(DEFAULT_BATCH[0]), mid.append(DEFAULT_BATCH[1]), high.append(DEFAULT_BATCH[2])
        elif axis == 1:
            low.append(1), mid.append(min(seq_len, max_seq_len)), high.append(max_seq_len)
        else:
            raise PreflightError(
                f"tensorrt_build: input {name!r} axis {axis} is dynamic ({dim or '?'}); give its shapes in the "
                "recipe (shapes: {name: {min, opt, max}})"
            )
    return ShapeRange(min=low, opt=mid, max=high)


def build_profile(
    inputs: Mapping[str, Sequence[Dim]],
    shapes: Mapping[str, ShapeRange | Mapping[str, Any]],
    *,
    seq_len: int = 128,
    max_seq_len: int = 512,
) -> dict[str, ShapeRange]:
    """One optimization profile: input name → ``ShapeRange``, validated against the graph's ``inputs``.

    ``shapes`` (from the recipe) must name existing inputs, with the input's rank, ``min ≤ opt ≤ max``
    and static dimensions equal to the graph's; other inputs get defaults (batch 1/8/32 on axis 0,
    sequence 1/``seq_len``/``max_seq_len`` on axis 1). Raises ``PreflightError`` naming the input.
    """
    if max_seq_len < seq_len:
        raise PreflightError(f"tensorrt_build: max_seq_len ({max_seq_len}) is below seq_len ({seq_len})")
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise PreflightError(
            f"tensorrt_build: shapes name inputs the ONNX graph does not have: {', '.join(unknown)} "
            f"(its inputs: {', '.join(inputs) or 'none'})"
        )
    profile: dict[str, ShapeRange] = {}
    for name, dims in inputs.items():
        given = shapes.get(name)
        if given is None:
            profile[name] = _default_range(name, dims, seq_len, max_seq_len)
            continue
        try:
            shape = given if isinstance(given, ShapeRange) else ShapeRange.model_validate(given)
        except ValueError as error:
            raise PreflightError(f"tensorrt_build: shapes of input {name!r}: {error}") from None
        if len(shape.min) != len(dims):
            raise PreflightError(
                f"tensorrt_build: input {name!r} has rank {len(dims)} in the ONNX graph, but its shapes have rank "
                f"{len(shape.min)}"
            )
        for axis, dim in enumerate(dims):
            if isinstance(dim, int) and not (shape.min[axis] == shape.opt[axis] == shape.max[axis] == dim):
                raise PreflightError(
                    f"tensorrt_build: input {name!r} axis {axis} is fixed at {dim} in the ONNX graph; its min/opt/max "
                    f"must all be {dim}"
                )
        profile[name] = shape
    return profile


def engine_metadata(
    *,
    gpu_name: str,
    compute_capability: Sequence[int],
    tensorrt_version: str,
    cuda_version: str | None,
    precision: str,
    profile: Mapping[str, ShapeRange],
) -> dict[str, Any]:
    """What ``engine.json`` records: where the engine was built (it only runs there) and its profile."""
    return {
        "gpu_name": gpu_name,
        "compute_capability": [int(compute_capability[0]), int(compute_capability[1])],
        "tensorrt_version": tensorrt_version,
        "cuda_version": cuda_version,
        "precision": precision,
        "profile": {name: shape.model_dump() for name, shape in profile.items()},
    }


def describe_target(metadata: Mapping[str, Any]) -> str:
    """``NVIDIA H100 80GB HBM3 (compute capability 9.0), TensorRT 10.3.0, CUDA 12.4`` for pages and messages."""
    major, minor = metadata.get("compute_capability") or ("?", "?")
    text = f"{metadata.get('gpu_name') or 'unknown GPU'} (compute capability {major}.{minor})"
    if metadata.get("tensorrt_version"):
        text += f", TensorRT {metadata['tensorrt_version']}"
    if metadata.get("cuda_version"):
        text += f", CUDA {metadata['cuda_version']}"
    return text


def portability_problem(
    metadata: Mapping[str, Any],
    *,
    gpu_name: str | None,
    compute_capability: Sequence[int] | None,
    tensorrt_version: str | None = None,
) -> str | None:
    """Why an engine built as ``metadata`` says must not run on the given GPU; None when it may.

    TensorRT plans are specific to the GPU architecture and to the TensorRT version that built
    them (no hardware- or version-compatibility mode is used), and their tactics were timed on
    one GPU model. Refused: no GPU; another compute capability; another TensorRT version (when
    known); another GPU model of the same architecture (its timings do not carry over).
    """
    built_for = describe_target(metadata)
    if not gpu_name or compute_capability is None:
        return f"this TensorRT engine needs an NVIDIA GPU; it was built for {built_for}"
    built_cc = tuple(int(part) for part in metadata.get("compute_capability") or ())
    target_cc = (int(compute_capability[0]), int(compute_capability[1]))
    if built_cc != target_cc:
        return (
            f"TensorRT engines are not portable across GPU architectures: this one was built for {built_for}, "
            f"not for {gpu_name} (compute capability {target_cc[0]}.{target_cc[1]}); rebuild it on that GPU"
        )
    built_trt = metadata.get("tensorrt_version")
    if tensorrt_version and built_trt and tensorrt_version != built_trt:
        return (
            f"this engine was built with TensorRT {built_trt} and cannot be loaded by TensorRT {tensorrt_version}; "
            "rebuild it with the deployed version"
        )
    if _normalise(gpu_name) != _normalise(metadata.get("gpu_name") or ""):
        return (
            f"this engine was built and timed on {built_for}; {gpu_name} has the same architecture but another "
            "model, so its tactics and timings do not carry over: rebuild it on that GPU"
        )
    return None


def _normalise(name: str) -> str:
    return " ".join(name.lower().split())


def profile_batch_range(metadata: Mapping[str, Any]) -> tuple[int, int] | None:
    """The batch sizes (axis 0) every input of the engine's optimization profile accepts: ``(min, max)``.

    The intersection over inputs (an engine runs a batch only if every input's profile allows
    it); None when ``metadata`` records no profile, ``ValueError`` when the inputs' ranges do not
    overlap (such an engine could run no batch at all).
    """
    profile = metadata.get("profile") or {}
    if not profile:
        return None
    low = max(int(shape["min"][0]) for shape in profile.values())
    high = min(int(shape["max"][0]) for shape in profile.values())
    if low > high:
        raise ValueError(f"the engine's optimization profile allows no batch size (inputs need ≥ {low} and ≤ {high})")
    return low, high


def clamp_batch_sizes(batch_sizes: Sequence[int], metadata: Mapping[str, Any]) -> tuple[list[int], list[str]]:
    """Keep the benchmark batch sizes a TensorRT engine's optimization profile accepts.

    Returns ``(batch sizes to time, notes)``: batch sizes outside the profile's ``[min, max]``
    are dropped with a note for the report (the engine cannot run them; timing them would
    only fail). If none is left, the profile's ``opt`` batch is timed instead, and the note
    says so. Without a recorded profile the sizes are returned unchanged.
    """
    bounds = profile_batch_range(metadata)
    if bounds is None:
        return list(batch_sizes), []
    low, high = bounds
    kept = [size for size in batch_sizes if low <= size <= high]
    dropped = [size for size in batch_sizes if not low <= size <= high]
    notes = []
    if dropped:
        sizes = ", ".join(str(size) for size in dropped)
        notes.append(
            f"batch size{'s' if len(dropped) > 1 else ''} {sizes} not timed: outside the TensorRT engine's "
            f"optimization profile (batch {low} to {high}); rebuild the engine with a wider profile to time them"
        )
    if not kept:
        opts = [int(shape["opt"][0]) for shape in (metadata.get("profile") or {}).values()]
        fallback = min(max(max(opts, default=low), low), high)
        kept = [fallback]
        notes.append(f"timed at the profile's optimal batch size {fallback} instead")
    return kept, notes


# ---------------------------------------------------------------------------------------------
# The pass (needs TensorRT and a CUDA GPU; never run on the development machines)
# ---------------------------------------------------------------------------------------------


def timing_cache_path(gpu_name: str, tensorrt_version: str) -> Path:
    """Where this worker keeps its timing cache for one GPU model and TensorRT version.

    Timing caches are only valid for the device and version that produced them, hence both in the name.
    """
    root = Path(os.environ.get("INFEROPT_TRT_CACHE_DIR", Path.home() / ".cache" / "inferopt" / "tensorrt"))
    safe = "".join(ch if ch.isalnum() else "-" for ch in gpu_name).strip("-")
    return root / f"timing-{safe}-trt{tensorrt_version}.cache"


def _is_qdq(onnx_path: Path) -> bool:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


@register
class TensorRTBuild(Pass):
    name = "tensorrt_build"
    title = "TensorRT engine (GPU)"
    description = (
        "Build a TensorRT engine from an ONNX model on a GPU worker: FP16 or INT8, dynamic shapes through an "
        "optimization profile. The engine runs only on the GPU architecture and TensorRT version it was built "
        "with. Not yet verified on a real GPU (see README)."
    )
    Config = TensorRTBuildConfig
    input_formats = ("onnx",)
    tasks = ("feature-extraction", "text-classification", "image-classification")
    output_format = "tensorrt"
    requires = Requirements(device="cuda", packages=("tensorrt",))

    def preflight(self, artifact: ModelArtifact, config: TensorRTBuildConfig) -> Preflight:
        result = super().preflight(artifact, config)
        build_profile(
            graph_inputs(artifact.onnx_file), config.shapes, seq_len=config.seq_len, max_seq_len=config.max_seq_len
        )
        return result

    def run(self, artifact: ModelArtifact, config: TensorRTBuildConfig, ctx: PassContext) -> ModelArtifact:
        import tensorrt as trt
        import torch

        out = ctx.work_dir
        out.mkdir(parents=True, exist_ok=True)
        profile = build_profile(
            graph_inputs(artifact.onnx_file), config.shapes, seq_len=config.seq_len, max_seq_len=config.max_seq_len
        )
        gpu_name = torch.cuda.get_device_name()
        capability = torch.cuda.get_device_capability()
        calibrator = None
        qdq = _is_qdq(artifact.onnx_file)
        if config.precision == "int8" and not qdq:
            ctx.progress(0.1, f"preparing {config.calibration_samples} INT8 calibration batches")
            calibrator = _calibrator(artifact, profile, config.calibration_samples, out / "calibration.cache")
        cache_path = timing_cache_path(gpu_name, trt.__version__) if config.reuse_timing_cache else None
        ctx.progress(0.2, f"building a {config.precision} engine for {gpu_name} (this takes minutes)")
        plan = build_engine(
            artifact.onnx_file,
            profile,
            precision=config.precision,
            workspace_bytes=config.workspace_mb * 1024 * 1024,
            timing_cache=cache_path,
            calibrator=calibrator,
            log=ctx.log,
        )
        (out / ENGINE_FILE).write_bytes(plan)
        metadata = engine_metadata(
            gpu_name=gpu_name,
            compute_capability=capability,
            tensorrt_version=trt.__version__,
            cuda_version=torch.version.cuda,
            precision=config.precision,
            profile=profile,
        )
        metadata["int8_source"] = ("qdq" if qdq else "calibrated") if config.precision == "int8" else None
        (out / ENGINE_METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        copy_companion_files(artifact.folder, out)
        ctx.log(f"engine built for {describe_target(metadata)}: {len(plan) / 1e6:.1f} MB")
        return ModelArtifact.from_folder(
            out,
            name=f"tensorrt-{config.precision}",
            format="tensorrt",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={
                "engine": metadata,
                "weight_bits": {"fp32": 32, "fp16": 16, "int8": 8}[config.precision],
                "details": {"engine": metadata, "notes": [f"Built for {describe_target(metadata)}."]},
            },
        )


def build_engine(
    onnx_path: Path,
    profile: Mapping[str, ShapeRange],
    *,
    precision: str,
    workspace_bytes: int,
    timing_cache: Path | None = None,
    calibrator: Any = None,
    log=print,
) -> bytes:
    """Parse ``onnx_path`` and return the serialized engine (TensorRT 10 Python API; never run here)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise PassError(f"TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    optimization_profile = builder.create_optimization_profile()
    for name, shape in profile.items():
        optimization_profile.set_shape(name, shape.min, shape.opt, shape.max)
    config.add_optimization_profile(optimization_profile)
    if calibrator is not None:
        config.int8_calibrator = calibrator
        config.set_calibration_profile(optimization_profile)
    cache = None
    if timing_cache is not None:
        previous = timing_cache.read_bytes() if timing_cache.exists() else b""
        cache = config.create_timing_cache(previous)
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise PassError("TensorRT could not build an engine (see the worker log for the builder's errors)")
    if cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        temp = timing_cache.with_suffix(".tmp")
        temp.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
        temp.replace(timing_cache)  # atomic: concurrent builds never read half a cache
        log(f"timing cache saved: {timing_cache}")
    return bytes(memoryview(plan))


def _calibrator(artifact: ModelArtifact, profile: Mapping[str, ShapeRange], samples: int, cache_file: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` over the calibration split, at each input's ``opt`` shape."""
    import numpy as np
    import tensorrt as trt
    import torch

    from optimizers.evaluation.datasets import pydoc_retrieval
    from optimizers.runtimes import load_tokenizer

    batch, seq = next(iter(profile.values())).opt[:2]
    tokenizer = load_tokenizer(artifact)
    texts = pydoc_retrieval("calibration").texts[:samples]  # disjoint from the eval split by content hash
    batches = []
    for start in range(0, len(texts) - batch + 1, batch):
        encoded = tokenizer(texts[start : start + batch], padding="max_length", truncation=True, max_length=seq)
        batches.append({name: np.asarray(encoded[name], dtype=np.int64) for name in profile if name in encoded})

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.device: dict[str, torch.Tensor] = {}

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(batches):
                return None
            current = batches[self.index]
            self.index += 1
            self.device = {name: torch.from_numpy(current[name]).cuda() for name in names}
            return [int(self.device[name].data_ptr()) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.write_bytes(bytes(cache))

    return EntropyCalibrator()
