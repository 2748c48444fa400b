"""Typed errors raised by the optimization library.

Callers (CLI, workers, web forms) show ``str(error)`` to users, so every message
says what went wrong and, where possible, what to do about it.
"""


class InferOptError(Exception):
    """Base class for every error the library raises on purpose."""


class RecipeError(InferOptError):
    """The recipe is invalid: unknown pass, bad config value, impossible chain."""


class PreflightError(InferOptError):
    """A pass cannot run on this input or on this machine (raised before any work)."""


class PassError(InferOptError):
    """A pass ran but produced an unacceptable result (e.g. export verification failed)."""


class UnsafeInputError(InferOptError):
    """An uploaded file or archive was refused for safety reasons."""


class CancelledError(InferOptError):
    """The run was cancelled between steps at the caller's request."""
