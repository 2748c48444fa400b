"""``gguf_quantize``: quantize an F16/F32/BF16 GGUF to a llama.cpp type (Q4_K_M, Q5_K_M, Q8_0, ...).

Calls ``llama_cpp.llama_model_quantize`` (llama.cpp's own quantizer, the same
code as its ``llama-quantize`` tool). The file is written to a temporary name
and renamed when complete. The GGUF header is read back: every tensor's type
goes into the artifact's metadata, and tensors that llama.cpp stored in a
fall-back type (rows that do not divide into the 256-wide blocks of K-quants
and i-quants) are listed under ``fallbacks`` and logged.

``weight_bits`` in the metadata (nominal bits per weight of the requested
type) lets the pipeline pick the default perplexity gate: ≤ 1% relative
increase at 8 bits and more, ≤ 5% below (llama.cpp's own quality table).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
from collections.abc import Iterator
from typing import Literal, get_args

from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.gguf_info import fallback_tensors, read_gguf
from optimizers.llama_cpp_tools import llama_cpp_version
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight, Requirements
from optimizers.passes.common import copy_companion_files
from optimizers.passes.gguf_convert import GGUF_FILE, gguf_metadata

#: Types offered (llama.cpp ``LLAMA_FTYPE_MOSTLY_<name>``). IQ1/IQ2 and Q2_K_S are left out:
#: llama.cpp refuses them without an importance matrix.
QuantType = Literal[
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q5_1",
    "Q5_0",
    "Q4_K_M",
    "Q4_K_S",
    "Q4_1",
    "Q4_0",
    "IQ4_XS",
    "IQ4_NL",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K_S",
    "IQ3_M",
    "IQ3_S",
    "IQ3_XXS",
    "Q2_K",
    "F16",
    "BF16",
]
QUANT_TYPES: tuple[str, ...] = get_args(QuantType)
#: Input file types that can be quantized (llama.cpp re-quantizing an already quantized file loses twice).
_FLOAT_FILE_TYPES = ("F32", "F16", "BF16")


def weight_bits(quant_type: str) -> int:
    """Nominal bits per weight of a llama.cpp type name (``Q4_K_M`` → 4, ``IQ3_S`` → 3, ``F16`` → 16)."""
    name = quant_type.upper()
    if name in ("F16", "BF16"):
        return 16
    if name == "F32":
        return 32
    digits = "".join(ch for ch in name.removeprefix("IQ").removeprefix("Q").split("_")[0] if ch.isdigit())
    return int(digits) if digits else 16


class GgufQuantizeConfig(PassConfig):
    type: QuantType = Field("Q4_K_M", description="llama.cpp quantization type (e.g. Q4_K_M, Q5_K_M, Q8_0).")
    threads: int | None = Field(None, ge=1, le=1024, description="Quantizer threads (default: all worker cores).")


def ftype_constant(quant_type: str) -> int:
    """``llama_cpp.LLAMA_FTYPE_MOSTLY_<type>``; ``PreflightError`` if this llama-cpp-python lacks it."""
    import llama_cpp

    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant_type}", None)
    if value is None:
        raise PreflightError(
            f"llama-cpp-python {llama_cpp_version()} does not know the quantization type '{quant_type}'"
        )
    return int(value)


@contextlib.contextmanager
def _captured_llama_log(lines: list[str]) -> Iterator[None]:
    """Collect llama.cpp's log lines (one per tensor while quantizing) instead of printing them to stderr."""
    import llama_cpp
    from llama_cpp import _logger

    buffer: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        buffer.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        lines.extend("".join(buffer).splitlines())


@register
class GgufQuantize(Pass):
    name = "gguf_quantize"
    title = "GGUF quantization (llama.cpp K-quants)"
    description = (
        "Quantize an F16/F32 GGUF with llama.cpp (Q4_K_M, Q5_K_M, Q8_0 and the other llama.cpp types); "
        "reports tensors that fell back to another type."
    )
    Config = GgufQuantizeConfig
    input_formats = ("gguf",)
    tasks = ("causal-lm",)
    output_format = "gguf"
    requires = Requirements(packages=("llama_cpp",))

    def preflight(self, artifact: ModelArtifact, config: GgufQuantizeConfig) -> Preflight:
        report = super().preflight(artifact, config)
        ftype_constant(config.type)
        source = artifact.folder / GGUF_FILE
        if not source.is_file():
            raise PreflightError(f"'{artifact.name}' has no {GGUF_FILE}")
        file_type = read_gguf(source).file_type
        if file_type not in _FLOAT_FILE_TYPES:
            raise PreflightError(
                f"'{artifact.name}' is already quantized ({file_type}); quantize from an F16/F32/BF16 GGUF "
                "(gguf_convert with outtype f16) so the weights are not rounded twice"
            )
        report.estimated_seconds = 1.0 + source.stat().st_size / 100e6
        return report

    def run(self, artifact: ModelArtifact, config: GgufQuantizeConfig, ctx: PassContext) -> ModelArtifact:
        import llama_cpp

        out = ctx.work_dir
        out.mkdir(parents=True, exist_ok=True)
        partial = out / f".{GGUF_FILE}.partial"
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype_constant(config.type)
        params.nthread = config.threads or len(os.sched_getaffinity(0))
        ctx.progress(0.05, f"quantizing to {config.type}")
        ctx.log(f"llama_model_quantize → {config.type} with {params.nthread} threads")
        log_lines: list[str] = []
        try:
            with _captured_llama_log(log_lines):
                code = llama_cpp.llama_model_quantize(
                    str(artifact.folder / GGUF_FILE).encode(), str(partial).encode(), ctypes.byref(params)
                )
            if code != 0 or not partial.is_file():
                raise PassError(f"llama.cpp could not quantize to {config.type} (llama_model_quantize returned {code})")
            partial.rename(out / GGUF_FILE)
            copy_companion_files(artifact.folder, out)
            info = read_gguf(out / GGUF_FILE)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # nothing half-written is left behind
            raise
        fallbacks = fallback_tensors(info, config.type)
        for line in log_lines:
            if "fallback" in line:  # llama.cpp's own reason, e.g. "tensor cols 640 x 256 are not divisible by 256"
                ctx.log(f"llama.cpp: {line.strip()}")
        for tensor, kind in sorted(fallbacks.items()):
            ctx.log(f"fallback: {tensor} stored as {kind} (its rows do not divide into {config.type}'s 256 blocks)")
        ctx.log(f"wrote {GGUF_FILE}: file type {info.file_type}, tensor types {info.type_counts()}")
        ctx.progress(1.0, "quantized")
        return ModelArtifact.from_folder(
            out,
            name=f"gguf_{config.type.lower()}",
            format="gguf",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata=gguf_metadata(info, fallbacks=fallbacks, weight_bits=weight_bits(config.type)),
        )
