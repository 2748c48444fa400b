"""InferOpt-native PyTorch modules stored as the ``torch`` artifact format.

A ``torch`` artifact folder holds ``config.json`` (``inferopt_architecture``
plus the constructor's sizes) and ``model.safetensors`` (the state dict). It is
never pickled: loading builds the architecture named in the config from code in
this package and fills it from safetensors, so a folder can only ever produce
one of the modules defined here. Sizes come from the config, so a structurally
pruned or distilled variant (fewer channels, a smaller hidden layer) loads with
the same call.

Contract (other passes build on these names):

- ``load_torch_module(artifact_or_folder) -> torch.nn.Module`` (eval mode, CPU, float32);
- ``save_torch_module(module, config, folder)`` writes both files;
- ``read_torch_config(folder)``, ``is_torch_module_folder(folder)``, ``ARCHITECTURES``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimizers.errors import UnsafeInputError

if TYPE_CHECKING:
    import torch

    from optimizers.artifacts import ModelArtifact

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE_KEY = "inferopt_architecture"
#: Architectures this package can build: name → module path holding ``build(config)``.
ARCHITECTURES: dict[str, str] = {"digits-cnn": "optimizers.models.digits_cnn"}


def _folder_of(artifact_or_folder: ModelArtifact | str | Path) -> Path:
    return Path(getattr(artifact_or_folder, "path", artifact_or_folder))


def read_torch_config(artifact_or_folder: ModelArtifact | str | Path) -> dict[str, Any]:
    """The folder's ``config.json``; ``UnsafeInputError`` unless it names a known architecture."""
    folder = _folder_of(artifact_or_folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UnsafeInputError(f"{folder}: no readable {CONFIG_FILE} ({error})") from None
    architecture = config.get(ARCHITECTURE_KEY) if isinstance(config, dict) else None
    if architecture not in ARCHITECTURES:
        raise UnsafeInputError(
            f"{folder}: {CONFIG_FILE} names architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    return config


def is_torch_module_folder(folder: str | Path) -> bool:
    """True when ``folder`` looks like a ``torch`` artifact (config naming a known architecture + weights)."""
    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        return False
    try:
        read_torch_config(folder)
    except UnsafeInputError:
        return False
    return True


def build_torch_module(config: dict[str, Any]) -> torch.nn.Module:
    """A freshly initialised module for ``config`` (no weights loaded)."""
    import importlib

    architecture = config.get(ARCHITECTURE_KEY)
    if architecture not in ARCHITECTURES:
        raise UnsafeInputError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return importlib.import_module(ARCHITECTURES[architecture]).build(config)


def load_torch_module(artifact_or_folder: ModelArtifact | str | Path) -> torch.nn.Module:
    """Build the module named by ``config.json`` and load ``model.safetensors`` into it (strict).

    Returns it in eval mode on the CPU. Raises ``UnsafeInputError`` for an
    unknown architecture or weights that do not fit the config (missing,
    unexpected or mis-shaped tensors).
    """
    from safetensors.torch import load_file

    folder = _folder_of(artifact_or_folder)
    config = read_torch_config(folder)
    module = build_torch_module(config)
    state = load_file(str(folder / WEIGHTS_FILE), device="cpu")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise UnsafeInputError(f"{folder}: weights do not match {CONFIG_FILE}: {error}") from None
    return module.eval()


def save_torch_module(module: torch.nn.Module, config: dict[str, Any], folder: str | Path) -> Path:
    """Write ``config.json`` (sorted keys) and ``model.safetensors`` (contiguous float tensors) into ``folder``.

    ``config`` must name a known architecture and describe ``module``: the
    saved folder is reloaded strictly by ``load_torch_module``, so a config
    that does not match the weights fails at load, not silently.
    """
    from safetensors.torch import save_file

    if config.get(ARCHITECTURE_KEY) not in ARCHITECTURES:
        raise ValueError(f"config must set {ARCHITECTURE_KEY} to one of {', '.join(sorted(ARCHITECTURES))}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


__all__ = [
    "ARCHITECTURES",
    "ARCHITECTURE_KEY",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "build_torch_module",
    "is_torch_module_folder",
    "load_torch_module",
    "read_torch_config",
    "save_torch_module",
]
