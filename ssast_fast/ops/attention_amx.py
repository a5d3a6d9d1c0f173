"""Attention for bfloat16 CPU tensors: the C++ kernels of ``csrc/attention``.

    out = softmax(q @ k^T * scale) @ v        q, k, v, out: [B, H, N, D] bfloat16, CPU

The products run on ATen's oneDNN bf16 brgemm (float32 accumulation): on AMX tiles where the CPU
has AMX-BF16 (Intel Sapphire Rapids and later), else on AVX512-BF16 dot products (AMD Zen 4/5,
Intel Cooper Lake); :func:`isa` says which. The softmax, its backward and the bf16 roundings are
AVX-512 loops, one (batch, head) per thread at a time, so the N x N scores stay in cache.
Numerics follow FlashAttention-2: float32 scores and softmax, probabilities and dS rounded to
bf16 before their products, backward from the saved log-sum-exp. ``out`` comes back as a
[B, H, N, D] view of [B, N, H, D] memory, the layout the output projection reads, so
``out.transpose(1, 2).reshape(B, N, H * D)`` is free.

The backend is called ``"amx"`` for compatibility (it was AMX-only); it runs wherever
:func:`available` holds: the extension is built, the CPU has AVX512-BF16, and a one-time
self-test of the brgemm against float32 products (run at first use) passes. The forward and
backward are torch custom ops (``ssast_fast::attention_amx_fwd`` / ``_bwd``) with fake kernels,
differentiable, and traceable by ``torch.compile``.
"""
from __future__ import annotations

import torch

from ssast_fast import _ext
from ssast_fast.ops._attention_autograd import register_attention_autograd

__all__ = ["available", "isa", "supports", "attention_amx", "attention_amx_packed"]

MAX_HEAD_DIM = 256
_probe: dict[str, object] = {}  # the hardware facts, filled at first use


def _cpu() -> dict[str, object]:
    if not _probe:
        m = _ext._module
        ok = m is not None and bool(m.attention_cpu_supported())  # runs the brgemm self-test once
        _probe.update(ok=ok, isa=str(m.attention_cpu_isa()) if ok else "none")
    return _probe


# Constant for torch.compile: traced code reads the probe's result, never calls into it.
@torch.compiler.assume_constant_result
def _cpu_ok() -> bool:
    return bool(_cpu()["ok"])


def isa() -> str:
    """The kernels' matrix-product path here: "amx" (AMX-BF16 tiles), "avx512_bf16" (vdpbf16ps)
    or "none". ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` (set before torch starts) forces the second
    on an AMX CPU."""
    return str(_cpu()["isa"])


def available() -> bool:
    """Whether the kernels can run here (extension built, not forced pure, AVX512-BF16, self-test passed)."""
    return _ext.get() is not None and _cpu_ok()


def supports(q: torch.Tensor) -> bool:
    """Whether q [B, H, N, D] (as bf16) fits the kernels: CPU, even D <= 256, kernels available."""
    D = q.shape[-1]
    return q.device.type == "cpu" and D % 2 == 0 and D <= MAX_HEAD_DIM and available()


def _ext_or_raise():
    ext = _ext.get()
    if ext is None or not _cpu_ok():
        raise RuntimeError("attention backend 'amx' (the bf16 CPU brgemm kernel) needs the ssast_fast._C extension "
                           "and a CPU with AVX512-BF16 (AMX optional); use backend='sdpa' or 'eager' here")
    return ext


@torch.library.custom_op("ssast_fast::attention_amx_fwd", mutates_args=())
def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(out [B, H, N, D] bf16 over [B, N, H, D] memory, lse [B, H, N] float32, natural log)."""
    return _ext_or_raise().attention_cpu_fwd(q, k, v, scale)


@_fwd_op.register_fake
def _(q, k, v, scale):
    B, H, N, D = q.shape
    out = q.new_empty((B, N, H, D)).permute(0, 2, 1, 3)
    return out, q.new_empty((B, H, N), dtype=torch.float32)


@torch.library.custom_op("ssast_fast::attention_amx_bwd", mutates_args=())
def _bwd_op(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
            lse: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv), contiguous bf16 [B, H, N, D]."""
    return _ext_or_raise().attention_cpu_bwd(do, q, k, v, out, lse, scale)


@_bwd_op.register_fake
def _(do, q, k, v, out, lse, scale):
    shape = tuple(q.shape)
    return q.new_empty(shape), q.new_empty(shape), q.new_empty(shape)


register_attention_autograd("ssast_fast::attention_amx_fwd", torch.ops.ssast_fast.attention_amx_bwd)


def attention_amx(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Differentiable ``softmax(q k^T scale) v`` for bf16 CPU tensors [B, H, N, D] (see module doc)."""
    if q.dtype != torch.bfloat16 or k.dtype != torch.bfloat16 or v.dtype != torch.bfloat16:
        raise TypeError(f"attention(backend='amx'): q, k, v must be bfloat16, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.device.type != "cpu":
        raise ValueError(f"attention(backend='amx'): CPU tensors required, got {q.device}")
    D = q.shape[-1]
    if D % 2 or D > MAX_HEAD_DIM:
        raise ValueError(f"attention(backend='amx'): head dim must be even and <= {MAX_HEAD_DIM}, got {D}")
    _ext_or_raise()
    return torch.ops.ssast_fast.attention_amx_fwd(q, k, v, scale)[0]


# ---- q, k, v packed as the qkv projection lays them out: [B, N, 3, H, D] ----------------------


def _unpack(qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, N, D] views
    return q, k, v


@torch.library.custom_op("ssast_fast::attention_amx_packed_fwd", mutates_args=())
def _packed_fwd_op(qkv: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(out [B, H, N, D] over [B, N, H, D] memory, lse [B, H, N]) for qkv [B, N, 3, H, D]."""
    return _ext_or_raise().attention_cpu_fwd(*_unpack(qkv), scale)


@_packed_fwd_op.register_fake
def _(qkv, scale):
    B, N, _, H, D = qkv.shape
    return qkv.new_empty((B, N, H, D)).permute(0, 2, 1, 3), qkv.new_empty((B, H, N), dtype=torch.float32)


@torch.library.custom_op("ssast_fast::attention_amx_packed_bwd", mutates_args=())
def _packed_bwd_op(do: torch.Tensor, qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                   scale: float) -> torch.Tensor:
    """d qkv [B, N, 3, H, D], written in the projection's layout (no stacking copy)."""
    return _ext_or_raise().attention_cpu_bwd_packed(do, qkv, out, lse, scale)


@_packed_bwd_op.register_fake
def _(do, qkv, out, lse, scale):
    return qkv.new_empty(qkv.shape)


def _packed_setup_context(ctx, inputs, output):
    qkv, scale = inputs
    out, lse = output
    ctx.save_for_backward(qkv, out, lse)
    ctx.scale = scale


def _packed_backward(ctx, grad_out, grad_lse):
    qkv, out, lse = ctx.saved_tensors
    if grad_out is None:
        return None, None
    return torch.ops.ssast_fast.attention_amx_packed_bwd(grad_out, qkv, out, lse, ctx.scale), None


torch.library.register_autograd("ssast_fast::attention_amx_packed_fwd", _packed_backward,
                                setup_context=_packed_setup_context)


def attention_amx_packed(qkv: torch.Tensor, scale: float) -> torch.Tensor:
    """Differentiable attention over qkv [B, N, 3, H, D] bf16 (CPU) -> [B, N, H * D]: the encoder's
    own layout on both sides, so neither direction copies q, k, v or their gradients."""
    if qkv.dtype != torch.bfloat16:
        raise TypeError(f"attention(backend='amx'): qkv must be bfloat16, got {qkv.dtype}")
    if qkv.device.type != "cpu":
        raise ValueError(f"attention(backend='amx'): CPU tensors required, got {qkv.device}")
    if qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(f"attention(backend='amx'): qkv must be [B, N, 3, H, D], got {tuple(qkv.shape)}")
    D = qkv.shape[-1]
    if D % 2 or D > MAX_HEAD_DIM:
        raise ValueError(f"attention(backend='amx'): head dim must be even and <= {MAX_HEAD_DIM}, got {D}")
    _ext_or_raise()
    B, N, _, H, _ = qkv.shape
    out = torch.ops.ssast_fast.attention_amx_packed_fwd(qkv, scale)[0]
    return out.transpose(1, 2).reshape(B, N, H * D)
