"""Helpers shared by passes: copying the non-weight files that travel with a model."""

from __future__ import annotations

import shutil
from pathlib import Path

from optimizers.artifacts import METADATA_FILE, ONNX_FILE

#: Files that hold weights or graphs; everything else in a model folder
#: (config, tokenizer, pooling config) travels with every variant.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".onnx_data", ".data", ".gguf", ".engine")


def copy_companion_files(source: Path, destination: Path) -> None:
    """Copy config and tokenizer files (not weights, not our metadata) to ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    for item in sorted(Path(source).rglob("*")):
        relative = item.relative_to(source)
        if not item.is_file() or item.name == METADATA_FILE or item.name.endswith(_WEIGHT_SUFFIXES):
            continue
        if item.name in (ONNX_FILE,) or relative.parts[0].startswith("."):
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(item, target)
