"""Turn a recipe's model reference into the baseline ``ModelArtifact``.

Accepted references: ``zoo:<name>`` (demo models), a Hugging Face folder
(``config.json`` + safetensors), an ONNX folder (``model.onnx`` + tokenizer
files), or a bare ``.onnx`` file together with a ``tokenizer`` folder. Hub ids
are not resolved here (no network at run time); download a folder first.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from optimizers.artifacts import ONNX_FILE, ModelArtifact
from optimizers.errors import RecipeError
from optimizers.models import is_torch_module_folder
from optimizers.onnx_safety import check_onnx_external_data
from optimizers.uploads import task_from_config
from optimizers.zoo import is_zoo_reference, zoo_format, zoo_model_folder

BASELINE_NAME = "baseline"


def task_of_folder(folder: Path) -> str:
    """Task implied by the folder's ``config.json`` (feature-extraction when absent or unreadable)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "feature-extraction"
    return task_from_config(config) if isinstance(config, dict) else "feature-extraction"


def resolve_model(
    reference: str,
    *,
    task: str | None = None,
    tokenizer: str | None = None,
    work_dir: Path | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> ModelArtifact:
    """The baseline artifact for ``reference`` (see module docstring).

    ``work_dir`` is where a bare ``.onnx`` file is assembled with its
    tokenizer; without it (validation only) nothing is copied.
    """
    if is_zoo_reference(reference):
        # A demo model not built yet is trained here (minutes for the tiny LM); ``progress``
        # follows the build so a job's page shows it instead of a silent "preparing".
        folder, zoo_task = zoo_model_folder(reference, progress=progress)
        return _describe(folder, zoo_format(reference), task or zoo_task)
    path = Path(reference)
    if not path.exists():
        raise RecipeError(f"model not found: {reference} (give zoo:minilm, a model folder or an .onnx file)")
    if path.is_file() and path.suffix == ".onnx":
        return _bare_onnx(path, task, tokenizer, work_dir)
    if (path / ONNX_FILE).is_file():
        check_onnx_external_data(path / ONNX_FILE)
        return _describe(path, "onnx", task or task_of_folder(path))
    if is_torch_module_folder(path):
        # An InferOpt-native module folder (config.json names the architecture): image classifiers so far.
        return _describe(path, "torch", task or "image-classification")
    if (path / "config.json").is_file():
        return _describe(path, "hf", task or task_of_folder(path))
    raise RecipeError(f"{reference} is neither a Hugging Face folder (config.json) nor an ONNX model")


def _describe(folder: Path, format: str, task: str) -> ModelArtifact:
    return ModelArtifact.from_folder(folder, name=BASELINE_NAME, format=format, task=task, write_metadata=False)


def _bare_onnx(path: Path, task: str | None, tokenizer: str | None, work_dir: Path | None) -> ModelArtifact:
    if not tokenizer or not (Path(tokenizer) / "tokenizer_config.json").is_file():
        raise RecipeError("an .onnx file needs 'tokenizer': a folder with the tokenizer files of that model")
    check_onnx_external_data(path)
    if work_dir is None:
        return ModelArtifact(
            name=BASELINE_NAME,
            path=str(path.parent),
            format="onnx",
            task=task or "feature-extraction",
            sha256="",
            size_bytes=path.stat().st_size,
        )
    from optimizers.passes.common import copy_companion_files

    target = Path(work_dir)
    target.mkdir(parents=True, exist_ok=True)
    copy_companion_files(Path(tokenizer), target)
    shutil.copy2(path, target / ONNX_FILE)
    return _describe(target, "onnx", task or task_of_folder(target))


__all__ = ["BASELINE_NAME", "check_onnx_external_data", "resolve_model", "task_of_folder"]
