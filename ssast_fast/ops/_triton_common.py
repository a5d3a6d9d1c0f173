"""Triton plumbing shared by the fused ops (:mod:`ssast_fast.ops.attention`,
:mod:`ssast_fast.ops.infonce`): the optional import, interpreter detection, the autotune config
lists split by precision, the dot precision, the device context and the runtime checks.

Each op module reads the interpreter flag once at its own import (``TRITON_INTERPRET`` there,
which tests may patch) and passes it to :func:`require_triton_runtime`.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ContextManager, Optional

import torch

try:  # Triton is optional: without it only the torch backends exist.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only on machines without triton
    triton = None
    tl = None
    HAS_TRITON = False

__all__ = ["HAS_TRITON", "TRITON_DTYPES", "check_triton_dtype", "device_ctx", "dot_precision",
           "interpret_flag", "make_configs", "prune_by_precision", "prune_configs_by",
           "require_triton_runtime", "tl", "triton"]

#: Input dtypes the Triton kernels take.
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: One block config: (BLOCK_M, BLOCK_N, num_warps, num_stages).
BlockConfig = tuple[int, int, int, int]


def interpret_flag() -> bool:
    """Whether Triton runs in its CPU interpreter (``TRITON_INTERPRET``).

    Triton decides at decoration time whether ``@triton.jit`` builds an interpreted function, so
    an op module calls this once, at its import. Read from ``triton.knobs`` where it exists,
    else from the environment.
    """
    if HAS_TRITON:
        try:
            return bool(triton.knobs.runtime.interpret)
        except AttributeError:  # older triton without knobs
            pass
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def make_configs(fast: Iterable[BlockConfig], fp32: Iterable[BlockConfig]) -> list:
    """``triton.Config`` objects for the ``BLOCK_M`` / ``BLOCK_N`` meta-parameters.

    ``fast``: configs for half-precision (tensor-core) dots, ``fp32``: for IEEE float32 dots;
    each config is tagged (``ssast_fp32``) so that :func:`prune_by_precision` keeps only the
    list matching a launch's ``DOT_PREC``.
    """
    out = []
    for group, is_fp32 in ((fast, False), (fp32, True)):
        for bm, bn, w, s in group:
            c = triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            c.ssast_fp32 = is_fp32
            out.append(c)
    return out


def prune_by_precision(configs: Sequence, named_args: Mapping[str, Any], **kwargs: Any) -> list:
    """Autotune ``early_config_prune``: the configs made for the launch's ``DOT_PREC``
    (``"ieee"``: the float32 list), or all of them if none is tagged for it."""
    want_fp32 = {**named_args, **kwargs}.get("DOT_PREC") == "ieee"
    kept = [c for c in configs if getattr(c, "ssast_fp32", want_fp32) == want_fp32]
    return kept or list(configs)


def prune_configs_by(interpret: bool) -> Optional[dict]:
    """``prune_configs_by`` for ``triton.autotune``: none under the interpreter (one config),
    else :func:`prune_by_precision`."""
    return None if interpret else {"early_config_prune": prune_by_precision}


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s ``input_precision`` for inputs of ``dtype``.

    float32 inputs: true fp32 products (``"ieee"``; eager torch does not use TF32 by default
    either). Half inputs: ``"tf32"``, which Triton ignores for them.
    """
    return "ieee" if dtype == torch.float32 else "tf32"


def device_ctx(t: torch.Tensor) -> ContextManager:
    """``torch.cuda.device(t.device)`` for a CUDA tensor (kernels launch on its device), else a
    no-op context."""
    if t.is_cuda:
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def require_triton_runtime(t: torch.Tensor, interpret: bool, *, missing: str,
                           not_cuda: str) -> None:
    """Raise unless the Triton kernels can run on ``t``.

    Args:
        t: a kernel input.
        interpret: the calling op module's ``TRITON_INTERPRET``.
        missing: message of the ``RuntimeError`` raised when Triton is not installed.
        not_cuda: message of the ``ValueError`` raised for a non-CUDA tensor outside the
            interpreter; ``{device}`` is replaced by ``t``'s device.
    """
    if not HAS_TRITON:
        raise RuntimeError(f"{missing}; install it with `pip install 'ssast-fast[triton]'`")
    if not t.is_cuda and not interpret:
        raise ValueError(not_cuda.format(device=t.device))


def check_triton_dtype(dtype: torch.dtype, where: str) -> None:
    """Raise ``TypeError("{where}: dtype ... is not supported ...")`` for a dtype outside
    :data:`TRITON_DTYPES`."""
    if dtype not in TRITON_DTYPES:
        raise TypeError(f"{where}: dtype {dtype} is not supported (float32, float16, bfloat16)")
