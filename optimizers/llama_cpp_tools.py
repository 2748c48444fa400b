"""Where llama.cpp's HF → GGUF converter lives, and what it can convert.

The converter (``convert_hf_to_gguf.py`` with its own ``gguf-py/`` and
``conversion/`` packages) is not part of the llama-cpp-python wheel. Set-up
(``scripts/llama_cpp_tools.sh``, run by ``scripts/venv.sh``, ``make run`` and
``make test``) unpacks it from the sdist of the *installed* llama-cpp-python
version into ``~/.cache/inferopt/llama.cpp/<version>/vendor/llama.cpp``, so
converter and runtime always come from the same llama.cpp commit. It is run
as a subprocess from that folder with ``PYTHONPATH`` pointing at its own
``gguf-py`` (the PyPI ``gguf`` package is older and lacks what it needs).

``INFEROPT_LLAMA_CPP_DIR`` overrides the folder (the one holding
``convert_hf_to_gguf.py``).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
from pathlib import Path

SETUP_COMMAND = "bash scripts/llama_cpp_tools.sh"


def llama_cpp_version() -> str | None:
    """Installed llama-cpp-python version, or None."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


def cache_root() -> Path:
    configured = os.environ.get("INFEROPT_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "inferopt"


def converter_dir(version: str | None = None) -> Path | None:
    """The folder holding ``convert_hf_to_gguf.py`` for ``version`` (default: installed); None if unknown."""
    configured = os.environ.get("INFEROPT_LLAMA_CPP_DIR")
    if configured:
        return Path(configured)
    version = version or llama_cpp_version()
    if version is None:
        return None
    return cache_root() / "llama.cpp" / version / "vendor" / "llama.cpp"


def find_converter() -> Path | None:
    """Path of ``convert_hf_to_gguf.py`` if it and its ``gguf-py`` are present."""
    folder = converter_dir()
    if folder is None:
        return None
    script = folder / "convert_hf_to_gguf.py"
    if script.is_file() and (folder / "gguf-py" / "gguf" / "__init__.py").is_file():
        return script
    return None


def missing_converter_message() -> str:
    """What to tell a user when the converter is missing: exactly how to get it."""
    version = llama_cpp_version()
    if version is None:
        return (
            "llama-cpp-python is not installed: install the project requirements "
            "(`pip install -c constraints.txt -r requirements.txt`, or `make install`), then run "
            f"`{SETUP_COMMAND}` to fetch llama.cpp's converter"
        )
    return (
        f"llama.cpp's converter (convert_hf_to_gguf.py) for llama-cpp-python {version} is not in "
        f"{converter_dir()}: run `{SETUP_COMMAND}` in the InferOpt checkout (it downloads the "
        f"llama-cpp-python {version} source distribution with pip and unpacks the converter there; "
        "`make run` and `make test` do this too)"
    )


def converter_env(script: Path) -> dict[str, str]:
    """Environment for running the converter: its own gguf-py and helper modules first on the path."""
    folder = script.parent
    extra = [str(folder / "gguf-py"), str(folder)]
    current = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(extra + ([current] if current else [])),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }


@functools.cache
def _architectures_in(folder: str) -> frozenset[str]:
    names: set[str] = set()
    sources = [Path(folder) / "convert_hf_to_gguf.py", *sorted((Path(folder) / "conversion").glob("*.py"))]
    for source in sources:
        try:
            text = source.read_text(encoding="utf-8")
        except OSError:
            continue
        for block in re.findall(r"@ModelBase\.register\(([^)]*)\)", text):
            names.update(re.findall(r"[\"']([A-Za-z0-9_.\-]+)[\"']", block))
    return frozenset(names)


def known_architectures() -> frozenset[str]:
    """Hugging Face ``architectures`` names the installed converter registers (empty if it is missing)."""
    script = find_converter()
    return _architectures_in(str(script.parent)) if script else frozenset()


__all__ = [
    "SETUP_COMMAND",
    "converter_dir",
    "converter_env",
    "find_converter",
    "known_architectures",
    "llama_cpp_version",
    "missing_converter_message",
]
