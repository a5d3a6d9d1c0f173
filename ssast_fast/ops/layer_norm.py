"""LayerNorm whose output is rounded to bfloat16: the encoder's pre-norms under CPU bf16 autocast.

    y = bf16((x - mean) / sqrt(var + eps) * weight + bias)    x: float32 [..., C]

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` a LayerNorm runs in float32 and the
Linear after it casts the result to bf16; the C++ kernel (``csrc/norm``, AVX512-BF16) does both
in one pass, and its backward takes the bf16 gradient the Linear returns and produces the
float32 dx, dweight and dbias, again in one pass. The values equal ``norm(x).to(bf16)`` up to
float32 rounding inside the normalisation (a rare last-bit difference in the bf16 output).

:func:`add_layer_norm_bf16` also fuses the residual add before the norm: ``s = x + h`` (h the bf16
output of the attention or MLP branch) and ``y = bf16(LayerNorm(s))`` in one pass; its backward
adds the residual stream's gradient and returns both dx (float32) and dh (bf16) in the same pass.

Backends of the family (:func:`resolve_backend`, the package's one dispatch idiom): ``"cpp"``, the
fused C++ kernels, where they apply (float32 CPU input under bf16 CPU autocast, an affine
LayerNorm over the last dim, extension built, AVX512-BF16); ``"torch"``, the ``nn.LayerNorm``
module itself (autocast casts later). ``"auto"`` picks ``"cpp"`` wherever it applies; every
decision is recorded in :func:`ssast_fast.ops.dispatch.record`. :func:`norm_for_linear` and the
encoder's fused path (``Block.forward_fused``) use it. Custom ops
``ssast_fast::layer_norm_bf16_fwd`` / ``_bwd`` and ``ssast_fast::add_layer_norm_bf16_fwd`` /
``_bwd``, with fake kernels and registered autograd formulas.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ssast_fast import _ext
from ssast_fast.ops import dispatch

__all__ = ["BACKENDS", "available", "layer_norm_bf16", "add_layer_norm_bf16", "norm_for_linear",
           "resolve_backend"]

BACKENDS = ("auto", "cpp", "torch")

# Probed once at import (a hardware fact), so that the choice stays traceable by torch.compile.
_CPU_OK: bool = _ext._module is not None and bool(_ext._module.layer_norm_bf16_supported())


def available() -> bool:
    """Whether the fused kernel can run here (extension built, not forced pure, AVX512-BF16)."""
    return _CPU_OK and _ext.get() is not None


def _ext_or_raise():
    ext = _ext.get()
    if ext is None or not _CPU_OK:
        raise RuntimeError("layer_norm_bf16 needs the ssast_fast._C extension and a CPU with AVX512-BF16")
    return ext


@torch.library.custom_op("ssast_fast::layer_norm_bf16_fwd", mutates_args=())
def _fwd_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
            eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y bf16 like x, mean [M], rstd [M]) over the M rows of x [..., C]."""
    return _ext_or_raise().layer_norm_bf16_fwd(x, weight, bias, eps)


@_fwd_op.register_fake
def _(x, weight, bias, eps):
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    return x.new_empty(x.shape, dtype=torch.bfloat16), x.new_empty((rows,)), x.new_empty((rows,))


@torch.library.custom_op("ssast_fast::layer_norm_bf16_bwd", mutates_args=())
def _bwd_op(dy: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
            weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx float32 like x, dweight [C], dbias [C])."""
    return _ext_or_raise().layer_norm_bf16_bwd(dy, x, mean, rstd, weight)


@_bwd_op.register_fake
def _(dy, x, mean, rstd, weight):
    return x.new_empty(x.shape), weight.new_empty(weight.shape), weight.new_empty(weight.shape)


def _setup_context(ctx, inputs, output):
    x, weight, _, _ = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, mean, rstd, weight)


def _backward(ctx, dy, d_mean, d_rstd):
    x, mean, rstd, weight = ctx.saved_tensors
    if dy is None:
        return None, None, None, None
    dx, dw, db = torch.ops.ssast_fast.layer_norm_bf16_bwd(dy.to(torch.bfloat16), x, mean, rstd, weight)
    return dx, dw, db, None


torch.library.register_autograd("ssast_fast::layer_norm_bf16_fwd", _backward, setup_context=_setup_context)


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or bias.dtype != torch.float32:
        raise TypeError(f"layer_norm_bf16: x, weight, bias must be float32, got {x.dtype}, {weight.dtype}, {bias.dtype}")
    if x.device.type != "cpu":
        raise ValueError(f"layer_norm_bf16: CPU tensors required, got {x.device}")
    if x.dim() < 1 or weight.shape != (x.shape[-1],) or bias.shape != (x.shape[-1],):
        raise ValueError(f"layer_norm_bf16: x [..., C] with weight and bias [C] required, got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(bias.shape)}")
    _ext_or_raise()


def layer_norm_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the last dim of float32 CPU x [..., C], returned in bfloat16 (differentiable)."""
    _check(x, weight, bias)
    return torch.ops.ssast_fast.layer_norm_bf16_fwd(x, weight, bias, eps)[0]


def norm_for_linear(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` for a Linear to consume: fused to a bf16 output under bf16 CPU autocast."""
    if resolve_backend(x, norm=norm) == "cpp":
        return layer_norm_bf16(x, norm.weight, norm.bias, norm.eps)
    return norm(x)


# ---- the residual add fused in: s = x + h, y = bf16(LayerNorm(s)) --------------------------------


@torch.library.custom_op("ssast_fast::add_layer_norm_bf16_fwd", mutates_args=())
def _add_fwd_op(x: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s = x + h float32, y bf16, mean [M], rstd [M]) for x float32 and h bf16 [..., C]."""
    return _ext_or_raise().add_layer_norm_bf16_fwd(x, h, weight, bias, eps)


@_add_fwd_op.register_fake
def _(x, h, weight, bias, eps):
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    return (x.new_empty(x.shape), x.new_empty(x.shape, dtype=torch.bfloat16), x.new_empty((rows,)),
            x.new_empty((rows,)))


@torch.library.custom_op("ssast_fast::add_layer_norm_bf16_bwd", mutates_args=())
def _add_bwd_op(ds: Optional[torch.Tensor], dy: torch.Tensor, s: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx float32, dh bf16, dweight, dbias); dx = ds + the LayerNorm backward of dy, dh = bf16(dx)."""
    return _ext_or_raise().add_layer_norm_bf16_bwd(ds, dy, s, mean, rstd, weight)


@_add_bwd_op.register_fake
def _(ds, dy, s, mean, rstd, weight):
    return (s.new_empty(s.shape), s.new_empty(s.shape, dtype=torch.bfloat16), weight.new_empty(weight.shape),
            weight.new_empty(weight.shape))


def _add_setup_context(ctx, inputs, output):
    _, _, weight, _, _ = inputs
    s, _, mean, rstd = output
    ctx.save_for_backward(s, mean, rstd, weight)


def _add_backward(ctx, ds, dy, d_mean, d_rstd):
    s, mean, rstd, weight = ctx.saved_tensors
    if dy is None:  # only the residual stream is used: the LayerNorm contributes nothing
        return ds, None if ds is None else ds.to(torch.bfloat16), None, None, None
    dx, dh, dw, db = torch.ops.ssast_fast.add_layer_norm_bf16_bwd(ds, dy.to(torch.bfloat16), s, mean, rstd, weight)
    return dx, dh, dw, db, None


torch.library.register_autograd("ssast_fast::add_layer_norm_bf16_fwd", _add_backward, setup_context=_add_setup_context)


def add_layer_norm_bf16(x: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                        eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, y): s = x + h (float32 x, bf16 h, [..., C]) and y = LayerNorm(s) in bf16 (differentiable)."""
    if h.dtype != torch.bfloat16 or h.shape != x.shape:
        raise TypeError(f"add_layer_norm_bf16: h must be bfloat16 shaped like x {tuple(x.shape)}, "
                        f"got {h.dtype} {tuple(h.shape)}")
    _check(x, weight, bias)
    s, y, _, _ = torch.ops.ssast_fast.add_layer_norm_bf16_fwd(x, h, weight, bias, eps)
    return s, y


def resolve_backend(x: torch.Tensor, backend: str = "auto", *, norm: nn.LayerNorm) -> str:
    """The concrete backend ("cpp" | "torch") that serves ``norm(x)`` feeding a Linear (alone, or
    fused with the residual add before it). ``auto``: "cpp" for float32 CPU x under bf16 CPU
    autocast with an affine LayerNorm over the last dim when the kernels are available, else
    "torch". An explicit "cpp" that cannot run here raises ValueError / RuntimeError."""
    if backend not in BACKENDS:
        raise ValueError(f"layer_norm: unknown backend {backend!r}; choose one of {BACKENDS}")
    bf16_autocast = (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                     and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    fits = (x.device.type == "cpu" and x.dtype == torch.float32 and norm.elementwise_affine
            and norm.bias is not None and len(norm.normalized_shape) == 1)
    if backend == "cpp":
        if not fits:
            raise ValueError("layer_norm(backend='cpp'): needs float32 CPU input and an affine "
                             f"LayerNorm over the last dim, got {x.dtype} on {x.device}")
        _ext_or_raise()
        return backend
    if backend == "torch":
        return backend
    which = "cpp" if bf16_autocast and fits and available() else "torch"
    dispatch.note("layer_norm", f"{x.device.type}, {str(x.dtype).replace('torch.', '')}, "
                  f"bf16 autocast {'on' if bf16_autocast else 'off'}", which,
                  "the fused C++ kernels (float32 input under CPU bf16 autocast, AVX512-BF16)"
                  if which == "cpp" else "nn.LayerNorm: the fused kernels serve float32 CPU input "
                  "under CPU bf16 autocast only, where the extension and AVX512-BF16 exist")
    return which
