"""``gguf_convert``: a Hugging Face causal LM → one GGUF file (F16, F32, BF16 or Q8_0) for llama.cpp.

Runs llama.cpp's own ``convert_hf_to_gguf.py``, matched to the installed
llama-cpp-python (see ``optimizers.llama_cpp_tools``), as a subprocess. The
output artifact (format ``gguf``) is a folder with ``model.gguf`` plus the
config and tokenizer files of the input, so evaluation can tokenize exactly
as the baseline does. The GGUF header is read back and every tensor's type is
recorded in the artifact's metadata.

Preflight refuses, before any work: a model that is not a causal LM, an
architecture the converter does not register (named in the message), a
tokenizer without the files the converter reads, PyTorch-quantized weights,
and a missing converter (the message says how to fetch it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Literal

from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError, PreflightError
from optimizers.gguf_info import read_gguf
from optimizers.llama_cpp_tools import (
    converter_env,
    find_converter,
    known_architectures,
    llama_cpp_version,
    missing_converter_message,
)
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight, Requirements
from optimizers.passes.common import copy_companion_files

GGUF_FILE = "model.gguf"
#: Nominal bits per weight of each output type (the gate picks its perplexity rule from it).
OUTTYPE_BITS = {"f32": 32, "f16": 16, "bf16": 16, "q8_0": 8}
#: Files llama.cpp's converter reads a vocabulary from (any one suffices for Llama-family models).
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")


class GgufConvertConfig(PassConfig):
    outtype: Literal["f16", "f32", "bf16", "q8_0"] = Field(
        "f16",
        description="GGUF tensor type written by the converter: f16 (the usual start for gguf_quantize), "
        "f32 (exact), bf16, or q8_0 directly.",
    )
    timeout_s: int = Field(1800, ge=10, le=86_400, description="Longest the converter may run.")


def model_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PreflightError(f"{folder.name} has no readable config.json: {error}") from None
    if not isinstance(config, dict):
        raise PreflightError(f"{folder.name}/config.json is not a JSON object")
    return config


def check_causal_lm(artifact: ModelArtifact, pass_name: str) -> dict:
    """The model's config, if it is a causal LM (``PreflightError`` naming what it is otherwise)."""
    config = model_config(artifact.folder)
    architectures = config.get("architectures") or []
    if artifact.task != "causal-lm" or not any(str(name).endswith("ForCausalLM") for name in architectures):
        described = ", ".join(map(str, architectures)) or config.get("model_type", "unknown")
        raise PreflightError(
            f"{pass_name} needs a causal language model (task causal-lm, a *ForCausalLM architecture); "
            f"'{artifact.name}' is {artifact.task} ({described})"
        )
    return config


@register
class GgufConvert(Pass):
    name = "gguf_convert"
    title = "GGUF conversion (llama.cpp)"
    description = (
        "Convert a Hugging Face causal LM to GGUF with llama.cpp's own converter (F16/F32/BF16/Q8_0), "
        "the input of gguf_quantize and of the llama.cpp runtime."
    )
    Config = GgufConvertConfig
    input_formats = ("hf",)
    tasks = ("causal-lm",)
    output_format = "gguf"
    requires = Requirements(packages=("llama_cpp", "sentencepiece"))

    def preflight(self, artifact: ModelArtifact, config: GgufConvertConfig) -> Preflight:
        report = super().preflight(artifact, config)
        model = check_causal_lm(artifact, self.name)
        if artifact.metadata.get("weights"):
            raise PreflightError(
                f"'{artifact.name}' holds PyTorch-quantized weights ({artifact.metadata['weights']}); "
                "convert the floating-point model and quantize with gguf_quantize instead"
            )
        script = find_converter()
        if script is None:
            raise PreflightError(missing_converter_message())
        architecture = (model.get("architectures") or ["?"])[0]
        known = known_architectures()
        if architecture not in known:
            raise PreflightError(
                f"llama.cpp's converter (llama-cpp-python {llama_cpp_version()}) does not know the architecture "
                f"'{architecture}'; it converts {len(known)} architectures, e.g. LlamaForCausalLM, "
                "MistralForCausalLM, Qwen2ForCausalLM"
            )
        present = [name for name in TOKENIZER_FILES if (artifact.folder / name).is_file()]
        if not present:
            raise PreflightError(
                f"'{artifact.name}' has no tokenizer the converter can read: it needs tokenizer.model "
                "(SentencePiece) or tokenizer.json in the model folder"
            )
        if "tokenizer.model" not in present:
            report.notes.append(
                "only tokenizer.json: llama.cpp's converter accepts BPE tokenizers whose pre-tokenizer it "
                "recognises, and fails naming the hash otherwise"
            )
        weights = sum(path.stat().st_size for path in artifact.folder.glob("*.safetensors"))
        if weights == 0:
            raise PreflightError(f"'{artifact.name}' has no .safetensors weights to convert")
        report.estimated_seconds = 5.0 + weights / 50e6
        report.estimated_memory_mb = weights * 2 / 1e6
        return report

    def run(self, artifact: ModelArtifact, config: GgufConvertConfig, ctx: PassContext) -> ModelArtifact:
        script = find_converter()
        if script is None:  # preflight checked; the cache may have been removed since
            raise PreflightError(missing_converter_message())
        out = ctx.work_dir
        out.mkdir(parents=True, exist_ok=True)
        partial = out / f".{GGUF_FILE}.partial"
        command = [
            sys.executable,
            str(script),
            str(artifact.folder.resolve()),
            "--outfile",
            str(partial.resolve()),
            "--outtype",
            config.outtype,
        ]
        ctx.log(f"running llama.cpp's converter ({script.parent}) with --outtype {config.outtype}")
        ctx.progress(0.05, "converting to GGUF")
        try:
            tail = _run_converter(command, script, ctx, config.timeout_s)
            if not partial.is_file():
                raise PassError(f"the converter finished but wrote no file:\n{tail}")
            partial.rename(out / GGUF_FILE)
            copy_companion_files(artifact.folder, out)
            info = read_gguf(out / GGUF_FILE)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # nothing half-written is left behind
            raise
        ctx.log(f"wrote {GGUF_FILE}: {info.architecture}, {len(info.tensors)} tensors, types {info.type_counts()}")
        ctx.progress(1.0, "converted")
        return ModelArtifact.from_folder(
            out,
            name=f"gguf_{config.outtype}",
            format="gguf",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata=gguf_metadata(info, weight_bits=OUTTYPE_BITS[config.outtype]),
        )


def gguf_metadata(info, **extra) -> dict:
    """An artifact's metadata for the ``model.gguf`` that ``info`` (``read_gguf``) describes, plus ``extra``."""
    return {
        "gguf_file": GGUF_FILE,
        "file_type": info.file_type,
        "architecture": info.architecture,
        "tensor_types": info.tensor_types(),
        "type_counts": info.type_counts(),
        "llama_cpp_python": llama_cpp_version(),
        **extra,
    }


def _run_converter(command: list[str], script: Path, ctx: PassContext, timeout_s: int) -> str:
    """Run the converter, relaying its progress and honouring cancellation; its output's tail on failure."""
    tail: deque[str] = deque(maxlen=40)
    process = subprocess.Popen(
        command,
        cwd=script.parent,
        env=converter_env(script),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    deadline = time.monotonic() + timeout_s
    try:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip())
            if "gguf: " in line or line.startswith("INFO:hf-to-gguf:Model"):
                ctx.log(line.strip())
            ctx.check_cancelled()
            if time.monotonic() > deadline:
                raise PassError(f"the converter ran longer than {timeout_s} s and was stopped")
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        process.kill()
        process.wait()
        raise
    text = "\n".join(tail)
    if code != 0:
        raise PassError(f"llama.cpp's converter failed (exit {code}):\n{text}")
    return text
