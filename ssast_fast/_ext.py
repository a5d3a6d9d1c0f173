"""Optional loader for the compiled extension ``ssast_fast._C``.

``import ssast_fast`` never fails without it: the pure-Python paths take over and one
warning says so. ``SSAST_FAST_PURE=1`` forces the pure paths even when it is built.
"""
from __future__ import annotations

import contextlib
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
        from ssast_fast import _C as _module  # type: ignore[attr-defined, no-redef]
    except ImportError as exc:  # not built, or built against another torch
        _load_error = str(exc)
        warnings.warn(
            f"ssast_fast: compiled extension not available ({exc}); using pure-Python paths. "
            "Build it with `pip install --no-build-isolation -e .`.",
            RuntimeWarning,
            stacklevel=2,
        )


def get() -> ModuleType | None:
    """The compiled module, or None when it is missing or the pure path is forced."""
    return None if _forced_pure else _module


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
