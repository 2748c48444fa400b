"""Registry of optimization passes, keyed by each pass's ``name``.

Adding a technique is one module here decorated with ``@register``; the web
form, API validation and CLI all read the registry.
"""

from __future__ import annotations

from optimizers.errors import RecipeError
from optimizers.passes.base import Pass, PassConfig, PassContext, Preflight, Requirements

_REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator adding a pass to the registry (names must be unique)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"duplicate pass name {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def get_pass(name: str) -> Pass:
    """An instance of the pass called ``name``; ``RecipeError`` naming the known ones otherwise."""
    _load_builtin_passes()
    try:
        return _REGISTRY[name]()
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise RecipeError(f"unknown pass '{name}'; known passes: {known}") from None


def all_passes() -> list[type[Pass]]:
    """Every registered pass class, sorted by name."""
    _load_builtin_passes()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def _load_builtin_passes() -> None:
    # Imported lazily so that importing the registry stays cheap (no torch).
    from optimizers.passes import (  # noqa: F401
        distill,
        gguf_convert,
        gguf_quantize,
        int4_weight_only,
        llm_compressor,
        onnx_export,
        openvino_quantize,
        ort_optimize,
        ort_quantize_dynamic,
        ort_quantize_static,
        prune_structured,
        prune_unstructured,
        qat,
        sparsity_2_4,
        tensorrt_build,  # noqa: F401  (GPU workers only; never run here)
        torch_quantize_dynamic,
    )


__all__ = ["Pass", "PassConfig", "PassContext", "Preflight", "Requirements", "all_passes", "get_pass", "register"]
