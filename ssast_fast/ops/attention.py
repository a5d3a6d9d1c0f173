"""Bidirectional multi-head attention: a Triton flash-attention kernel and its references.

    out = softmax(q @ k^T * scale) @ v        q, k, v, out: [B, H, N, D]

One dispatcher, :func:`attention`, chooses among these backends:

``"eager"``
    The reference formulation of SSAST's ``Attention`` block, with explicit ops in the input
    dtype: ``attn = (q @ k.transpose(-2, -1)) * scale; attn = attn.softmax(-1); attn @ v``.
``"sdpa"``
    ``torch.nn.functional.scaled_dot_product_attention`` (torch picks flash / efficient /
    cuDNN / math itself).
``"triton"``
    The Triton kernels below (CUDA tensors; CPU tensors when ``TRITON_INTERPRET=1`` was set
    before this module was imported).
``"amx"``
    The C++ kernels for bfloat16 CPU tensors on CPUs with AVX512-BF16 (oneDNN brgemm on AMX tiles
    where the CPU has them, else on AVX512-BF16; the name is historical)
    (:mod:`ssast_fast.ops.attention_amx`); other dtypes are cast to bf16 under autocast only.
``"auto"``
    On CUDA, ``"triton"`` once the kernel passed its self-check for (dtype, D) on the device
    and measured faster than SDPA (and than SDPA limited to each of its kernels,
    ``"sdpa:flash"`` / ``"sdpa:efficient"`` / ``"sdpa:cudnn"``) at the call's shape bucket,
    else the fastest SDPA variant (:mod:`ssast_fast.ops.dispatch`). On CPU, ``"amx"`` for
    bfloat16 work (bf16 tensors, or CPU autocast to bf16) when the kernels are available;
    otherwise ``"sdpa"``.

Triton path, FlashAttention-2 style (no causal mask, no dropout):

* forward, one program per (query block, batch*head), on a 1-D grid: an online softmax over
  key blocks,
  kept in base 2 (``exp2``, logits pre-multiplied by ``scale * log2(e)``); writes ``out`` and
  the per-row statistic ``lse2 = m + log2(l)`` (float32 [B, H, N]);
* backward, atomic-free: ``delta = rowsum(dO * O)`` (preprocess kernel), then a dK/dV kernel
  (one program per key block, looping over query blocks) and a dQ kernel (one program per
  query block, looping over key blocks); both recompute ``P = exp2(s - lse2)``.

Every dot product accumulates in float32; probabilities and ``dS`` are rounded to the input
dtype before their matmul with V / Q / K (as in FlashAttention); float32 inputs use IEEE
float32 dots (no TF32). Arbitrary N is handled by masking the last (partial) block only;
strides are explicit, so q, k, v and dO may be non-contiguous views.

The forward and backward launchers are registered as torch custom ops
(``ssast_fast::attention_fwd`` / ``ssast_fast::attention_bwd``) with fake (meta) kernels, and the
forward op carries its autograd formula (``torch.library.register_autograd``, shared with the bf16
CPU kernel's ops in :mod:`ssast_fast.ops._attention_autograd`), so ``torch.compile(fullgraph=True)``
traces a call to :func:`attention` without graph breaks.

:func:`resolve_backend` is the family's backend choice (the package's one idiom, as in
:mod:`ssast_fast.ops.infonce`, :mod:`ssast_fast.ops.layer_norm`, :mod:`ssast_fast.features.dispatch`
and :mod:`ssast_fast.masking.dispatch`); every ``auto`` decision is recorded in
:func:`ssast_fast.ops.dispatch.record`.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# Triton is optional: without it only the torch backends exist.
from ssast_fast.ops import attention_amx as _amx
from ssast_fast.ops import dispatch
from ssast_fast.ops._attention_autograd import register_attention_autograd
from ssast_fast.ops._triton_common import (HAS_TRITON, TRITON_INTERPRET, BlockConfig,
                                           TunedKernel, aligned, check_triton_dtype,
                                           config_table, device_ctx, dot_precision, dtype_name,
                                           pow2_bucket, require_triton_runtime, tl, triton)

__all__ = [
    "attention",
    "attention_eager",
    "attention_sdpa",
    "attention_triton",
    "supports",
    "BACKENDS",
    "SUPPORTED_HEAD_DIMS",
    "HAS_TRITON",
    "TRITON_INTERPRET",
]

BACKENDS = ("auto", "triton", "amx", "sdpa", "eager")
#: Head dims the Triton kernels are built for; :func:`supports` says which run for a dtype.
SUPPORTED_HEAD_DIMS = (32, 64, 128)

_LOG2E = 1.4426950408889634


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def attention_eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    scale: Optional[float] = None) -> torch.Tensor:
    """Reference: ``softmax(q @ k^T * scale) @ v`` with explicit ops, in the input dtype."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    attn = (q @ k.transpose(-2, -1)) * scale
    attn = attn.softmax(dim=-1)
    return attn @ v


def attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   scale: Optional[float] = None) -> torch.Tensor:
    """``torch.nn.functional.scaled_dot_product_attention`` (no mask, no dropout)."""
    if scale is None:
        scale = q.shape[-1] ** -0.5
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


# ---------------------------------------------------------------------------------------------
# Triton kernels
# ---------------------------------------------------------------------------------------------

if HAS_TRITON:
    # Sizes are not specialized on (no "== 1" or "% 16" variants): one compiled kernel per
    # dtype / head dim / config, the one the resource report checks.
    _DNS = ["H", "N_CTX", "N_BUCKET", "BH_BUCKET"]

    @triton.jit
    def _program_ids(H, N_CTX, BLOCK: tl.constexpr):
        """(block index, pid_bh = b * H + h, b, h as int64) of this program. The grid is 1-D,
        (B * H * cdiv(N, BLOCK),), with the blocks of one (b, h) adjacent (they share K and V in
        L2): B * H is not capped at grid axis 1's 65,535."""
        pid = tl.program_id(0)
        n_blocks = tl.cdiv(N_CTX, BLOCK)
        pid_bh = pid // n_blocks
        return pid % n_blocks, pid_bh, (pid_bh // H).to(tl.int64), (pid_bh % H).to(tl.int64)

    @triton.jit
    def _load_rows(base, rows, offs_d, stride_n, stride_d, ok):
        """Rows ``rows`` [len(rows), HEAD_DIM] of the (b, h) matrix at ``base``, 0 where not ok."""
        return tl.load(base + rows[:, None] * stride_n + offs_d[None, :] * stride_d,
                       mask=ok[:, None], other=0.0)

    @triton.jit
    def _load_kv_block(k_base, v_base, cols, offs_d, stride_kn, stride_kd, stride_vn, stride_vd,
                       N_CTX, MASKED: tl.constexpr):
        """K and V rows ``cols`` [BLOCK_N, HEAD_DIM]; MASKED: rows past N_CTX read as 0."""
        k_ptrs = k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd
        v_ptrs = v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd
        if MASKED:
            col_ok = cols < N_CTX
            k = tl.load(k_ptrs, mask=col_ok[:, None], other=0.0)
            v = tl.load(v_ptrs, mask=col_ok[:, None], other=0.0)
        else:
            k = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        return k, v

    @triton.jit
    def _fwd_inner(acc, l_i, m_i, q, k_base, v_base, start_n, offs_n, offs_d,
                   stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, N_CTX,
                   MASKED: tl.constexpr, DOT_PREC: tl.constexpr):
        """One key block of the online softmax. MASKED: the block runs past N_CTX."""
        cols = start_n + offs_n
        k, v = _load_kv_block(k_base, v_base, cols, offs_d, stride_kn, stride_kd, stride_vn,
                              stride_vd, N_CTX, MASKED=MASKED)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale  # [M, N] base-2 logits
        if MASKED:
            s = tl.where((cols < N_CTX)[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
        return acc, l_i, m_new

    @triton.jit(do_not_specialize=_DNS)
    def _attn_fwd_kernel(
        Q, K, V, O, LSE2, sm_scale,
        stride_qb, stride_qh, stride_qn, stride_qd,
        stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd,
        stride_ob, stride_oh, stride_on, stride_od,
        H, N_CTX, N_BUCKET, BH_BUCKET,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        DOT_PREC: tl.constexpr,
    ):
        """grid = (B * H * cdiv(N, BLOCK_M),). Writes O [B, H, N, D] and LSE2 [B*H, N] (fp32).
        N_BUCKET, BH_BUCKET: autotune key only."""
        pid_m, pid_bh, off_b, off_h = _program_ids(H, N_CTX, BLOCK_M)
        q_base = Q + off_b * stride_qb + off_h * stride_qh
        k_base = K + off_b * stride_kb + off_h * stride_kh
        v_base = V + off_b * stride_vb + off_h * stride_vh
        o_base = O + off_b * stride_ob + off_h * stride_oh

        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < N_CTX

        q = _load_rows(q_base, offs_m, offs_d, stride_qn, stride_qd, row_ok)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        qk_scale = sm_scale * 1.4426950408889634  # log2(e): softmax in base 2

        n_full = (N_CTX // BLOCK_N) * BLOCK_N
        for start_n in range(0, n_full, BLOCK_N):
            acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, start_n, offs_n, offs_d,
                                       stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, N_CTX,
                                       MASKED=False, DOT_PREC=DOT_PREC)
        if n_full < N_CTX:
            acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, n_full, offs_n, offs_d,
                                       stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, N_CTX,
                                       MASKED=True, DOT_PREC=DOT_PREC)

        acc = acc / l_i[:, None]
        tl.store(o_base + offs_m[:, None] * stride_on + offs_d[None, :] * stride_od,
                 acc.to(O.dtype.element_ty), mask=row_ok[:, None])
        tl.store(LSE2 + pid_bh.to(tl.int64) * N_CTX + offs_m, m_i + tl.log2(l_i), mask=row_ok)

    @triton.jit(do_not_specialize=["H", "N_CTX"])
    def _attn_bwd_preprocess_kernel(
        O, DO, DELTA,
        stride_ob, stride_oh, stride_on, stride_od,
        stride_dob, stride_doh, stride_don, stride_dod,
        H, N_CTX,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    ):
        """delta[b*h, n] = sum_d dO * O (float32). grid = (B * H * cdiv(N, BLOCK_M),)."""
        pid_m, pid_bh, off_b, off_h = _program_ids(H, N_CTX, BLOCK_M)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < N_CTX
        o = _load_rows(O + off_b * stride_ob + off_h * stride_oh, offs_m, offs_d,
                       stride_on, stride_od, row_ok).to(tl.float32)
        do = _load_rows(DO + off_b * stride_dob + off_h * stride_doh, offs_m, offs_d,
                        stride_don, stride_dod, row_ok).to(tl.float32)
        tl.store(DELTA + pid_bh.to(tl.int64) * N_CTX + offs_m, tl.sum(o * do, 1), mask=row_ok)

    @triton.jit
    def _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, start_m, offs_m, offs_d,
                    stride_qn, stride_qd, stride_don, stride_dod, qk_scale, N_CTX,
                    MASKED: tl.constexpr, DOT_PREC: tl.constexpr):
        """One query block's contribution to a key block's dK, dV (computed transposed)."""
        rows = start_m + offs_m
        q_ptrs = q_base + rows[:, None] * stride_qn + offs_d[None, :] * stride_qd
        do_ptrs = do_base + rows[:, None] * stride_don + offs_d[None, :] * stride_dod
        if MASKED:
            row_ok = rows < N_CTX
            q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
            do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)
            # lse2 = +inf on padded rows makes their probabilities exactly 0.
            lse2 = tl.load(lse_base + rows, mask=row_ok, other=float("inf"))
            delta = tl.load(delta_base + rows, mask=row_ok, other=0.0)
        else:
            q = tl.load(q_ptrs)
            do = tl.load(do_ptrs)
            lse2 = tl.load(lse_base + rows)
            delta = tl.load(delta_base + rows)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PREC) * qk_scale  # [BLOCK_N, BLOCK_M]
        p_t = tl.exp2(s_t - lse2[None, :])
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PREC)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=DOT_PREC)
        return dk, dv

    @triton.jit(do_not_specialize=_DNS)
    def _attn_bwd_dkdv_kernel(
        Q, K, V, DO, DK, DV, LSE2, DELTA, sm_scale,
        stride_qb, stride_qh, stride_qn, stride_qd,
        stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd,
        stride_dob, stride_doh, stride_don, stride_dod,
        stride_dkb, stride_dkh, stride_dkn, stride_dkd,
        stride_dvb, stride_dvh, stride_dvn, stride_dvd,
        H, N_CTX, N_BUCKET, BH_BUCKET,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        DOT_PREC: tl.constexpr,
    ):
        """grid = (B * H * cdiv(N, BLOCK_N),): one key block per program, loop over queries."""
        pid_n, pid_bh, off_b, off_h = _program_ids(H, N_CTX, BLOCK_N)
        q_base = Q + off_b * stride_qb + off_h * stride_qh
        do_base = DO + off_b * stride_dob + off_h * stride_doh
        lse_base = LSE2 + pid_bh.to(tl.int64) * N_CTX
        delta_base = DELTA + pid_bh.to(tl.int64) * N_CTX

        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_m = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        col_ok = offs_n < N_CTX
        k = _load_rows(K + off_b * stride_kb + off_h * stride_kh, offs_n, offs_d,
                       stride_kn, stride_kd, col_ok)
        v = _load_rows(V + off_b * stride_vb + off_h * stride_vh, offs_n, offs_d,
                       stride_vn, stride_vd, col_ok)
        dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        qk_scale = sm_scale * 1.4426950408889634

        m_full = (N_CTX // BLOCK_M) * BLOCK_M
        for start_m in range(0, m_full, BLOCK_M):
            dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, start_m,
                                 offs_m, offs_d, stride_qn, stride_qd, stride_don, stride_dod,
                                 qk_scale, N_CTX, MASKED=False, DOT_PREC=DOT_PREC)
        if m_full < N_CTX:
            dk, dv = _dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, m_full,
                                 offs_m, offs_d, stride_qn, stride_qd, stride_don, stride_dod,
                                 qk_scale, N_CTX, MASKED=True, DOT_PREC=DOT_PREC)

        dk = dk * sm_scale  # d(logits)/dk carries the softmax scale
        tl.store(DK + off_b * stride_dkb + off_h * stride_dkh
                 + offs_n[:, None] * stride_dkn + offs_d[None, :] * stride_dkd,
                 dk.to(DK.dtype.element_ty), mask=col_ok[:, None])
        tl.store(DV + off_b * stride_dvb + off_h * stride_dvh
                 + offs_n[:, None] * stride_dvn + offs_d[None, :] * stride_dvd,
                 dv.to(DV.dtype.element_ty), mask=col_ok[:, None])

    @triton.jit
    def _dq_inner(dq, q, do, lse2, delta, k_base, v_base, start_n, offs_n, offs_d,
                  stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, N_CTX,
                  MASKED: tl.constexpr, DOT_PREC: tl.constexpr):
        """One key block's contribution to a query block's dQ."""
        cols = start_n + offs_n
        k, v = _load_kv_block(k_base, v_base, cols, offs_d, stride_kn, stride_kd, stride_vn,
                              stride_vd, N_CTX, MASKED=MASKED)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * qk_scale  # [BLOCK_M, BLOCK_N]
        p = tl.exp2(s - lse2[:, None])
        if MASKED:
            p = tl.where((cols < N_CTX)[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PREC)
        return dq

    @triton.jit(do_not_specialize=_DNS)
    def _attn_bwd_dq_kernel(
        Q, K, V, DO, DQ, LSE2, DELTA, sm_scale,
        stride_qb, stride_qh, stride_qn, stride_qd,
        stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd,
        stride_dob, stride_doh, stride_don, stride_dod,
        stride_dqb, stride_dqh, stride_dqn, stride_dqd,
        H, N_CTX, N_BUCKET, BH_BUCKET,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        DOT_PREC: tl.constexpr,
    ):
        """grid = (B * H * cdiv(N, BLOCK_M),): one query block per program, loop over keys."""
        pid_m, pid_bh, off_b, off_h = _program_ids(H, N_CTX, BLOCK_M)
        k_base = K + off_b * stride_kb + off_h * stride_kh
        v_base = V + off_b * stride_vb + off_h * stride_vh

        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < N_CTX
        q = _load_rows(Q + off_b * stride_qb + off_h * stride_qh, offs_m, offs_d,
                       stride_qn, stride_qd, row_ok)
        do = _load_rows(DO + off_b * stride_dob + off_h * stride_doh, offs_m, offs_d,
                        stride_don, stride_dod, row_ok)
        lse2 = tl.load(LSE2 + pid_bh.to(tl.int64) * N_CTX + offs_m, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + pid_bh.to(tl.int64) * N_CTX + offs_m, mask=row_ok, other=0.0)
        dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        qk_scale = sm_scale * 1.4426950408889634

        n_full = (N_CTX // BLOCK_N) * BLOCK_N
        for start_n in range(0, n_full, BLOCK_N):
            dq = _dq_inner(dq, q, do, lse2, delta, k_base, v_base, start_n, offs_n, offs_d,
                           stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, N_CTX,
                           MASKED=False, DOT_PREC=DOT_PREC)
        if n_full < N_CTX:
            dq = _dq_inner(dq, q, do, lse2, delta, k_base, v_base, n_full, offs_n, offs_d,
                           stride_kn, stride_kd, stride_vn, stride_vd, qk_scale, N_CTX,
                           MASKED=True, DOT_PREC=DOT_PREC)

        dq = dq * sm_scale
        tl.store(DQ + off_b * stride_dqb + off_h * stride_dqh
                 + offs_m[:, None] * stride_dqn + offs_d[None, :] * stride_dqd,
                 dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])

    # -- launch configurations ----------------------------------------------------------------
    # Per (input dtype, head dim): the (BLOCK_M, BLOCK_N, num_warps, num_stages) configs that
    # pass the sm_90 resource report on triton 3.6 and 3.7 (shared memory <= 232,448 B, no
    # spills; benchmarks/compile_report.py, docs/kernels_gpu.md), the default (pinned) config
    # first. A (dtype, head dim) without configs for all three kernels runs on the torch path.
    # The autotuner times the listed configs once per (N bucket, B*H bucket, D, dtype).
    # float32 (IEEE FMA dots, no tensor cores: each thread holds whole D-long operand rows)
    # fits at D = 32, and at D = 64 only in 16x16 tiles with 8 warps; at D = 128 every config
    # tried spills (0.2-34 KB), so float32 D = 128 runs on SDPA.
    FWD_CONFIGS = config_table(
        half={32: [(128, 64, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3)],
              64: [(128, 64, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3)],
              128: [(128, 64, 8, 3), (64, 64, 4, 3)]},
        fp32={32: [(32, 32, 8, 2), (16, 32, 4, 2)], 64: [(16, 16, 8, 2)]})
    DKDV_CONFIGS = config_table(
        half={32: [(32, 128, 8, 2), (64, 128, 8, 2), (32, 64, 4, 3)],
              64: [(32, 128, 8, 2), (64, 128, 8, 2), (32, 64, 4, 3)],
              128: [(32, 128, 8, 2), (16, 128, 8, 3)]},
        fp32={32: [(32, 32, 8, 2), (16, 32, 4, 2)], 64: [(16, 16, 8, 2)]})
    DQ_CONFIGS = config_table(
        half={32: [(128, 32, 8, 2), (128, 64, 8, 2), (64, 32, 4, 3)],
              64: [(128, 32, 8, 2), (128, 64, 8, 2), (64, 32, 4, 3)],
              128: [(128, 32, 8, 2), (128, 64, 8, 2), (64, 32, 4, 3)]},
        fp32={32: [(32, 32, 8, 2), (32, 16, 4, 2)], 64: [(16, 16, 8, 2)]})
    #: The preprocess kernel's (untuned) config; the other kernels' config in the interpreter.
    PRE_CONFIG = BlockConfig(32, 0, 4, 1) if TRITON_INTERPRET else BlockConfig(128, 0, 4, 1)
    _INTERPRET_CONFIG = BlockConfig(32, 32, 4, 1)

    def _config_class(args: dict) -> tuple[str, int]:
        return dtype_name(args["Q"].dtype), args["HEAD_DIM"]

    _KEY = ["N_BUCKET", "BH_BUCKET", "HEAD_DIM", "DOT_PREC"]

    #: The raw @triton.jit kernels, by name (for the resource report and for tooling).
    KERNELS = {
        "fwd": _attn_fwd_kernel,
        "bwd_preprocess": _attn_bwd_preprocess_kernel,
        "bwd_dkdv": _attn_bwd_dkdv_kernel,
        "bwd_dq": _attn_bwd_dq_kernel,
    }
    #: The tuned kernels (all but the preprocess one) and their configs per class.
    TUNED = {name: TunedKernel(KERNELS[name], table, _config_class, _KEY, TRITON_INTERPRET,
                               _INTERPRET_CONFIG)
             for name, table in (("fwd", FWD_CONFIGS), ("bwd_dkdv", DKDV_CONFIGS),
                                 ("bwd_dq", DQ_CONFIGS))}
else:  # pragma: no cover
    KERNELS, TUNED = {}, {}


def supports(dtype: torch.dtype, head_dim: int) -> bool:
    """Whether the Triton kernels take inputs of ``dtype`` with head dim ``head_dim``: Triton is
    importable and every kernel has a launch configuration for them that the sm_90 resource
    report checks. (The device, Triton's interpreter and autocast are the dispatcher's concern.)
    """
    cls = (dtype_name(dtype), head_dim)
    return HAS_TRITON and all(cls in t.configs for t in TUNED.values())


def _launch_args(B: int, H: int, N: int) -> tuple[int, int, int, int]:
    """The size arguments of the tuned kernels: H, N_CTX, N_BUCKET, BH_BUCKET."""
    return H, N, pow2_bucket(N, 16, 1 << 16), pow2_bucket(B * H, 1, 1024)


def _triton_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
    """Launch the forward kernel: returns (out [B, H, N, D] q.dtype, lse2 [B, H, N] fp32)."""
    B, H, N, D = q.shape
    out = torch.empty((B, H, N, D), dtype=q.dtype, device=q.device)
    lse2 = torch.empty((B, H, N), dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out, lse2
    q, k, v = aligned(q), aligned(k), aligned(v)
    grid = lambda meta: (B * H * triton.cdiv(N, meta["BLOCK_M"]),)  # noqa: E731
    with device_ctx(q):
        TUNED["fwd"].launch(
            grid, q, k, v, out, lse2, float(scale),
            *q.stride(), *k.stride(), *v.stride(), *out.stride(), *_launch_args(B, H, N),
            HEAD_DIM=D, DOT_PREC=dot_precision(q.dtype),
        )
    return out, lse2


def _triton_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     out: torch.Tensor, lse2: torch.Tensor, scale: float):
    """Launch the three backward kernels: returns (dq, dk, dv), contiguous, in q.dtype."""
    B, H, N, D = q.shape
    dq = torch.empty((B, H, N, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((B, H, N, D), dtype=q.dtype, device=q.device)
    dv = torch.empty((B, H, N, D), dtype=q.dtype, device=q.device)
    if dq.numel() == 0:
        return dq, dk, dv
    q, k, v, out, do = (aligned(t) for t in (q, k, v, out, do.to(q.dtype)))
    delta = torch.empty((B, H, N), dtype=torch.float32, device=q.device)
    lse2 = lse2.contiguous()
    prec = dot_precision(q.dtype)
    sizes = _launch_args(B, H, N)
    with device_ctx(q):
        KERNELS["bwd_preprocess"][(B * H * triton.cdiv(N, PRE_CONFIG.block_m),)](
            out, do, delta, *out.stride(), *do.stride(), H, N,
            HEAD_DIM=D, BLOCK_M=PRE_CONFIG.block_m, num_warps=PRE_CONFIG.num_warps,
            num_stages=PRE_CONFIG.num_stages,
        )
        TUNED["bwd_dkdv"].launch(
            lambda meta: (B * H * triton.cdiv(N, meta["BLOCK_N"]),),
            q, k, v, do, dk, dv, lse2, delta, float(scale),
            *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(), *dv.stride(),
            *sizes, HEAD_DIM=D, DOT_PREC=prec,
        )
        TUNED["bwd_dq"].launch(
            lambda meta: (B * H * triton.cdiv(N, meta["BLOCK_M"]),),
            q, k, v, do, dq, lse2, delta, float(scale),
            *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(),
            *sizes, HEAD_DIM=D, DOT_PREC=prec,
        )
    return dq, dk, dv


# ---------------------------------------------------------------------------------------------
# Custom ops (opaque to torch.compile, with fake kernels and a registered autograd formula)
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("ssast_fast::attention_fwd", mutates_args=())
def _attention_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton flash-attention forward: (out [B, H, N, D], lse2 [B, H, N] float32, base 2)."""
    _require_triton_runtime(q)
    return _triton_forward(q, k, v, scale)


@_attention_fwd_op.register_fake
def _(q, k, v, scale):
    B, H, N, D = q.shape
    return (q.new_empty((B, H, N, D)), q.new_empty((B, H, N), dtype=torch.float32))


@torch.library.custom_op("ssast_fast::attention_bwd", mutates_args=())
def _attention_bwd_op(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      out: torch.Tensor, lse2: torch.Tensor,
                      scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton flash-attention backward: (dq, dk, dv), each [B, H, N, D] in q.dtype."""
    _require_triton_runtime(q)
    return _triton_backward(do, q, k, v, out, lse2, scale)


@_attention_bwd_op.register_fake
def _(do, q, k, v, out, lse2, scale):
    shape = tuple(q.shape)
    return q.new_empty(shape), q.new_empty(shape), q.new_empty(shape)


# Makes torch.ops.ssast_fast.attention_fwd itself differentiable in q, k, v through
# attention_bwd (lse2 gets no gradient): the one autograd path of the Triton kernels.
register_attention_autograd("ssast_fast::attention_fwd", torch.ops.ssast_fast.attention_bwd)


# ---------------------------------------------------------------------------------------------
# Validation and dispatch
# ---------------------------------------------------------------------------------------------


def _require_triton_runtime(q: torch.Tensor) -> None:
    require_triton_runtime(
        q, TRITON_INTERPRET,
        missing="backend='triton' needs the `triton` package, which is not installed",
        not_cuda="backend='triton' needs CUDA tensors (got device {device}); on CPU set "
                 "TRITON_INTERPRET=1 before importing ssast_fast to run the kernel in Triton's "
                 "interpreter, or use backend='sdpa'/'eager'")


def _validate(q, k, v, same_dtype: bool = True) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"attention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"attention: {name} must have rank 4 [B, H, N, D], got shape {tuple(t.shape)}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError("attention: q, k, v must have the same shape [B, H, N, D], got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if same_dtype and not (q.dtype == k.dtype == v.dtype):
        raise TypeError(
            f"attention: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not t.dtype.is_floating_point:
            raise TypeError(f"attention: floating-point inputs required, {name} is {t.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(
            f"attention: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")


def _validate_triton(q) -> None:
    check_triton_dtype(q.dtype, "attention(backend='triton')")
    D = q.shape[-1]
    if HAS_TRITON and not supports(q.dtype, D):
        dims = [d for d in SUPPORTED_HEAD_DIMS if supports(q.dtype, d)]
        raise ValueError(f"attention(backend='triton'): head dim D={D} is not supported for "
                         f"{dtype_name(q.dtype)} inputs (supported: {tuple(dims)}; other head "
                         "dims and dtypes run on backend='sdpa')")
    _require_triton_runtime(q)


def _autocast_dtype(q: torch.Tensor) -> Optional[torch.dtype]:
    """The autocast dtype active for q's device type, or None."""
    try:
        if torch.is_autocast_enabled(q.device.type):
            return torch.get_autocast_dtype(q.device.type)
    except (RuntimeError, ValueError):  # device types without autocast
        pass
    return None


def _resolve_scale(scale, D: int) -> float:
    if scale is None:
        return D ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"attention: scale must be a float or None, got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"attention: scale must be finite, got {scale}")
    return scale


# ---------------------------------------------------------------------------------------------
# Backend choice: `auto` on CUDA goes through ssast_fast.ops.dispatch (self-check, measured
# choice between the Triton kernel and SDPA's backends); on CPU a fixed rule (AMX or SDPA).
# ---------------------------------------------------------------------------------------------

#: SDPA restricted to one of its kernels: what `auto` may pick when that kernel measured fastest.
SDPA_KERNELS = {"sdpa:flash": "FLASH_ATTENTION", "sdpa:efficient": "EFFICIENT_ATTENTION",
                "sdpa:cudnn": "CUDNN_ATTENTION"}
_CONCRETE = BACKENDS[1:] + tuple(SDPA_KERNELS)
# float64-reference check: pass when the kernel's error <= _CHECK_FACTOR x eager's own error in
# the same dtype + a floor (max |x - x_fp64| over the output and the gradient of qkv).
_CHECK_FACTOR = 4.0
_CHECK_FLOOR = {torch.float32: 1e-5, torch.float16: 1e-4, torch.bfloat16: 1e-3}



def _run_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """The Triton kernels, differentiable (the one launch point of every Triton call here)."""
    return torch.ops.ssast_fast.attention_fwd(q, k, v, scale)[0]


def _attend(which: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            scale: float) -> torch.Tensor:
    """Attention by a concrete backend (inputs already validated and cast)."""
    if which == "triton":
        _validate_triton(q)
        return _run_triton(q, k, v, scale)
    if which == "amx":
        return _amx.attention_amx(q, k, v, scale)
    if which in SDPA_KERNELS:
        with sdpa_kernel([getattr(SDPBackend, SDPA_KERNELS[which])]):
            return attention_sdpa(q, k, v, scale)
    if which == "sdpa":
        return attention_sdpa(q, k, v, scale)
    return attention_eager(q, k, v, scale)


def _packed_fwd_bwd(which: str, qkv: torch.Tensor, do: Optional[torch.Tensor],
                    scale: float) -> list[torch.Tensor]:
    """[out] (+ [d qkv] when ``do`` is given) of attention over the packed layout
    qkv [B, N, 3, H, D] (the strided q, k, v views the model passes), autocast off."""
    leaf = qkv.detach().requires_grad_(do is not None)
    with torch.autocast(qkv.device.type, enabled=False), torch.set_grad_enabled(do is not None):
        q, k, v = leaf.permute(2, 0, 3, 1, 4).unbind(0)
        out = _attend(which, q, k, v, scale)
        if do is None:
            return [out]
        out.backward(do)
    return [out, leaf.grad]


def _self_check(device: torch.device, dtype: torch.dtype, D: int) -> Optional[str]:
    """The Triton kernel against float64 eager attention, forward and backward, at B=1, H=2,
    N=130 (full and ragged blocks) in the packed layout; None, or what disagreed."""
    g = torch.Generator().manual_seed(D)
    qkv = torch.randn(1, 130, 3, 2, D, generator=g, dtype=torch.float64)
    do = torch.randn(1, 2, 130, D, generator=g, dtype=torch.float64)
    scale = D ** -0.5
    ref = _packed_fwd_bwd("eager", qkv.to(device), do.to(device), scale)
    lowp = (qkv.to(dtype).to(device), do.to(dtype).to(device))
    base = _packed_fwd_bwd("eager", *lowp, scale)
    got = _packed_fwd_bwd("triton", *lowp, scale)
    for name, r, b, x in zip(("out", "d qkv"), ref, base, got):
        if x.shape != r.shape:
            return f"{name}: shape {tuple(x.shape)}, expected {tuple(r.shape)}"
        err, err_eager = ((t.double() - r).abs().max().item() for t in (x, b))
        tol = _CHECK_FACTOR * err_eager + _CHECK_FLOOR[dtype]
        if not err <= tol:  # also catches NaN
            return f"{name}: max error {err:.3g} vs float64 > {tol:.3g}"
    return None


def _candidates(device: torch.device, dtype: torch.dtype, shape: tuple[int, ...], grad: bool
                ) -> dict:
    """Zero-argument callables running attention at ``shape`` (B, H, N, D) on fresh packed
    inputs, one per candidate backend: SDPA (its own pick) first, SDPA limited to each of its
    kernels, the Triton kernel."""
    B, H, N, D = shape
    qkv = torch.randn(B, N, 3, H, D, device=device, dtype=dtype)
    do = torch.randn(B, H, N, D, device=device, dtype=dtype) if grad else None
    names = ("sdpa", *SDPA_KERNELS, "triton") if device.type == "cuda" else ("sdpa", "triton")
    return {n: functools.partial(_packed_fwd_bwd, n, qkv, do, D ** -0.5) for n in names}


def resolve_backend(q: torch.Tensor, backend: str = "auto",
                    needs_grad: Optional[bool] = None) -> str:
    """The concrete backend ("triton" | "amx" | "sdpa" | "sdpa:<kernel>" | "eager") that
    :func:`attention` uses for q [B, H, N, D] (``needs_grad``: default from q and grad mode).

    ``auto`` on CUDA: the Triton kernel once it passed its self-check for (dtype, D) on the
    device, if it measured faster than SDPA (and than SDPA limited to each of its kernels) for
    this (dtype, D, N bucket, B*H bucket, fwd or fwd+bwd); else SDPA. See
    :mod:`ssast_fast.ops.dispatch`. On CPU: "amx" for bfloat16 work when the AMX kernels are
    available, else "sdpa".
    """
    if backend not in BACKENDS and backend not in SDPA_KERNELS:
        raise ValueError(f"attention: unknown backend {backend!r}; choose one of {_CONCRETE}")
    if backend != "auto":
        return backend
    amp_dtype = _autocast_dtype(q)
    dtype = amp_dtype or q.dtype
    name = str(dtype).replace("torch.", "")
    B, H, N, D = q.shape
    if dispatch.kernel_device(q.device):
        grad = (torch.is_grad_enabled() and q.requires_grad) if needs_grad is None else needs_grad
        shape = (B, H, N, D)
        return dispatch.resolve_triton(
            "attention", q.device, dtype=dtype, D=D, sizes={"N": N, "B*H": B * H}, grad=grad,
            supported=HAS_TRITON and supports(dtype, D), interpret=TRITON_INTERPRET,
            fallback="sdpa", kernel_name="Triton attention kernel",
            check=lambda: _self_check(q.device, dtype, D),
            candidates=lambda: _candidates(q.device, dtype, shape, grad))
    amx = torch.bfloat16 in (q.dtype, amp_dtype) and _amx.supports(q)
    dispatch.note("attention", f"{q.device.type}, {name}, D={D}", "amx" if amx else "sdpa",
                  "CPU bfloat16 with the AMX kernels" if amx else
                  "CPU: SDPA (AMX kernels for bfloat16 only, when the CPU and build have them)")
    return "amx" if amx else "sdpa"


def attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     scale: Optional[float] = None) -> torch.Tensor:
    """The Triton flash-attention kernel (differentiable); see :func:`attention`."""
    _validate(q, k, v)
    _validate_triton(q)
    return _run_triton(q, k, v, _resolve_scale(scale, q.shape[-1]))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
              backend: str = "auto") -> torch.Tensor:
    """Bidirectional attention ``softmax(q @ k^T * scale) @ v``.

    Args:
        q, k, v: [B, H, N, D], one floating dtype and device. The Triton backend takes
            float32/float16/bfloat16 and D in {32, 64, 128} where :func:`supports` says so
            (not float32 at D = 128); any N >= 0.
        scale: logit scale, default ``D ** -0.5``.
        backend: "auto" | "triton" | "amx" | "sdpa" | "eager" (see the module docstring), or
            "sdpa:flash" | "sdpa:efficient" | "sdpa:cudnn" (SDPA limited to one kernel).

    Returns:
        [B, H, N, D] in the input dtype (float32 accumulation on the Triton path); under
        ``torch.autocast`` in the autocast dtype (as SDPA).
    """
    # Under autocast, the inputs may differ in dtype: SDPA and eager's matmuls are autocast ops
    # themselves; the Triton and AMX paths cast to the autocast dtype as SDPA would.
    amp_dtype = _autocast_dtype(q)
    _validate(q, k, v, same_dtype=amp_dtype is None)
    scale = _resolve_scale(scale, q.shape[-1])
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    which = resolve_backend(q, backend, needs_grad=grad)
    if which in ("triton", "amx") and amp_dtype is not None:
        q, k, v = (t.to(amp_dtype) for t in (q, k, v))
    return _attend(which, q, k, v, scale)


def attention_packed(qkv: torch.Tensor, scale: Optional[float] = None, backend: str = "auto") -> torch.Tensor:
    """Attention over the qkv projection's layout: qkv [B, N, 3, H, D] -> [B, N, H * D].

    The same as ``attention(q, k, v)`` on ``qkv.permute(2, 0, 3, 1, 4)`` followed by
    ``out.transpose(1, 2).reshape(B, N, H * D)``; the "amx" backend takes the packed tensor
    itself and writes the gradient of qkv in place, with no stacking copy.
    """
    if not isinstance(qkv, torch.Tensor):
        raise TypeError(f"attention_packed: qkv must be a torch.Tensor, got {type(qkv).__name__}")
    if qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(f"attention_packed: qkv must have shape [B, N, 3, H, D], got {tuple(qkv.shape)}")
    B, N, _, H, D = qkv.shape
    scale = _resolve_scale(scale, D)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # one gradient buffer in backward (unlike indexing)
    which = resolve_backend(q, backend)
    if which == "amx":
        amp_dtype = _autocast_dtype(qkv)
        return _amx.attention_amx_packed(qkv if amp_dtype is None else qkv.to(amp_dtype), scale)
    return attention(q, k, v, scale=scale, backend=which).transpose(1, 2).reshape(B, N, H * D)
