"""Optional loaders for the compiled extensions ``ssast_fast._C`` (CPU) and ``ssast_fast._C_cuda``.

``import ssast_fast`` never fails without them: the pure-Python (or tensor-op) paths take over.
A missing ``_C`` is warned about once; a missing ``_C_cuda`` is the normal state of CPU builds
and silent (one warning only if it is built but fails to load). ``SSAST_FAST_PURE=1`` forces
the pure paths even when they are built.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from types import ModuleType
from typing import Iterator

import torch  # noqa: F401  (loads libtorch, which the extension links against)

_module: ModuleType | None = None
_load_error: str | None = None
_forced_pure = os.environ.get("SSAST_FAST_PURE", "0") == "1"

if not _forced_pure:
    try:
        _module = importlib.import_module("ssast_fast._C")
    except ImportError as exc:  # not built, or built against another torch
        _load_error = str(exc)
        warnings.warn(
            f"ssast_fast: compiled extension not available ({exc}); using pure-Python paths. "
            "Build it with `pip install --no-build-isolation -e .`.",
            RuntimeWarning,
            stacklevel=2,
        )


_cuda_module: ModuleType | None = None
if not _forced_pure:
    try:
        _cuda_module = importlib.import_module("ssast_fast._C_cuda")
    except ImportError as exc:
        # Not built (CPU torch, no nvcc, SSAST_FAST_NO_CUDA=1): silent. Built but not loadable
        # (another torch or CUDA): one warning.
        if not (isinstance(exc, ModuleNotFoundError) and exc.name == "ssast_fast._C_cuda"):
            warnings.warn(f"ssast_fast: CUDA extension _C_cuda failed to load ({exc}); using tensor-op paths on "
                          "CUDA.", RuntimeWarning, stacklevel=2)


def get() -> ModuleType | None:
    """The compiled module, or None when it is missing or the pure path is forced."""
    return None if _forced_pure else _module


def get_cuda() -> ModuleType | None:
    """The compiled CUDA module ``_C_cuda``, or None when it is missing or the pure path is forced."""
    return None if _forced_pure else _cuda_module


def available() -> bool:
    return get() is not None


@contextlib.contextmanager
def pure() -> Iterator[None]:
    """Force the pure-Python paths inside the block (used by tests to cover both paths)."""
    global _forced_pure
    old = _forced_pure
    _forced_pure = True
    try:
        yield
    finally:
        _forced_pure = old
