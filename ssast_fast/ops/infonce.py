"""SSAST's discriminative (InfoNCE) loss and accuracy: fused Triton kernels and the torch reference.

Per sample b, with targets T_b [M, D] (masked input patches) and predictions P_b [M, D]::

    S_b = T_b @ P_b^T                                   [M, M], float32
    nce = -1/(B*M) * sum_b sum_i log_softmax(S_b, dim=-1)[i, i]
    acc =  1/(B*M) * #{(b, j): argmax_i softmax(S_b, dim=-1)[i, j] == j}

The accuracy normalises rows and takes the argmax down columns (the reference's rule, not the
argmax of S); where softmax underflows to 0 the column ties and torch returns the first row.

Backends of :func:`infonce`:

``"torch"``   the readable reference, any
              float dtype, differentiable in both inputs.
``"triton"``  the fused kernels below (CUDA tensors; CPU tensors when ``TRITON_INTERPRET=1`` was
              set before this module was imported); float32/float16/bfloat16, differentiable in
              ``pred`` only (``targets`` must not require grad: the model detaches them).
``"auto"``    on CUDA, ``"triton"`` once the kernels passed their self-check for (dtype, D) and
              measured faster than the batched torch path at the call's shape bucket
              (:mod:`ssast_fast.ops.dispatch`); ``"torch"`` otherwise.

Triton path (S is never materialised beyond one [BLOCK_M, BLOCK_N] tile per program):

Both kernels run on a 1-D grid (B times the row or column blocks; B is not capped at 65,535);
inputs are zero-padded to a multiple of 16 features, which changes no score.

* rows kernel, one program per (row block, b): loops over column blocks, S tile =
  ``tl.dot(T_rows, P_cols^T)``, online logsumexp and the diagonal -> the row max ``m_i``, the
  ``log l_i = lse_i - m_i`` [B, M] and the per-row loss ``lse_i - S_ii`` [B, M] (float32; lse is
  kept as two numbers so that ``(S_ij - m_i) - log l_i`` is as exact as torch's softmax when
  scores are large: one float32 lse of ~1e3 would carry an absolute error of ~1e-4);
* columns kernel, one program per (column block, b): loops over row blocks, recomputes the S
  tile, ``p = exp(S - lse_row)``, keeps a running column argmax (strict ``>`` across blocks,
  first index within a block: the first maximal row wins, as in torch) -> hit [B, M]; and, when
  ``pred`` needs a gradient, accumulates in the same pass

      d nce / d S_ij = (p_ij - [i == j]) / (B*M),   d nce / d P_j = sum_i (d nce / d S_ij) T_i

  stored in float32 [B, M, D]. The backward is then ``grad_nce * dP`` (Liger-Kernel's fused
  linear cross entropy does the same): two passes over S in all, instead of three with a
  separate backward kernel.

Numerics: dots accumulate in float32; float32 inputs use IEEE float32 dots (torch's default, no
TF32). For float16/bfloat16 inputs the probabilities entering ``p^T @ T`` are split into a high
and a low half-precision part (two tensor-core dots), keeping ~16-22 bits of ``p - [i == j]``
where a single rounding to the input dtype would add an error of the dtype's epsilon to every
term. The column argmax compares ``exp(x)``, ``x = S_ij - lse_i``, with IEEE underflow
emulated: below ``2^-125`` the value is rounded to a multiple of ``2^-149`` (the float32
subnormal grid) by hand, so zeros, subnormals and ties come out as in torch's softmax however
the GPU's ``exp`` treats subnormals (approximate ``ex2``, flush-to-zero).

The launcher is the torch custom op ``ssast_fast::infonce_fwd`` with a fake kernel, wrapped by
:class:`InfoNCEFunction`, so ``torch.compile(fullgraph=True)`` traces :func:`infonce`.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch

from ssast_fast.ops import dispatch
# Triton is optional: without it only the torch backend exists.
from ssast_fast.ops._triton_common import (HAS_TRITON, TRITON_INTERPRET, BlockConfig,
                                           TunedKernel, aligned, check_triton_dtype,
                                           config_table, device_ctx, dot_precision, dtype_name,
                                           pow2_bucket, require_triton_runtime, tl, triton)

__all__ = ["infonce", "infonce_torch", "InfoNCEFunction", "resolve_backend", "supports",
           "BACKENDS", "HAS_TRITON", "TRITON_INTERPRET"]

BACKENDS = ("auto", "triton", "torch")


# ---------------------------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------------------------


def infonce_torch(targets: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: targets, pred [B, M, D] -> (acc, nce), 0-d float32, computed in float32
    (float64 stays float64), also under autocast. The readable form of the reference's per-sample loop."""
    B, M, _ = targets.shape
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    with torch.autocast(pred.device.type, enabled=False):  # the loss stays float32 under autocast
        scores = torch.bmm(targets.to(dtype), pred.to(dtype).transpose(1, 2))  # [B, M, M]
    nce = -torch.diagonal(torch.log_softmax(scores, dim=-1), dim1=1, dim2=2).sum() / (B * M)
    with torch.no_grad():
        hits = torch.softmax(scores, dim=-1).argmax(dim=1) == torch.arange(M, device=scores.device)
        acc = hits.sum().float() / (B * M)
    return acc, nce


# ---------------------------------------------------------------------------------------------
# Triton kernels
# ---------------------------------------------------------------------------------------------

if HAS_TRITON:
    _LOG_TINY = tl.constexpr(-125 * math.log(2))  # log(2^-125): below it p is rounded by hand
    _LOG_2_149 = tl.constexpr(149 * math.log(2))
    _2_POW_64 = tl.constexpr(2.0 ** 64)
    _2_POW_M85 = tl.constexpr(2.0 ** -85)  # = 2^-149 (subnormal step) * 2^64

    # Sizes are not specialized on (no "== 1" or "% 16" variants): one compiled kernel per
    # dtype / BLOCK_D / config, the one the resource report checks.
    _DNS = ["M", "D", "M_BUCKET", "B_BUCKET"]

    @triton.jit
    def _block_range(pid, BLOCK: tl.constexpr, n):
        """Indices of block ``pid`` (``pid * BLOCK + arange(BLOCK)``) and which are < n."""
        idx = pid * BLOCK + tl.arange(0, BLOCK)
        return idx, idx < n

    @triton.jit
    def _program_ids(M, BLOCK: tl.constexpr):
        """(block index, sample b as int64) of this program. The grid is 1-D,
        (B * cdiv(M, BLOCK),), with the blocks of one sample adjacent: B is not capped at grid
        axis 1's 65,535."""
        pid = tl.program_id(0)
        n_blocks = tl.cdiv(M, BLOCK)
        return pid % n_blocks, (pid // n_blocks).to(tl.int64)

    @triton.jit
    def _load_tile(X, rows, row_ok, stride_r, offs_d, d_ok, stride_d):
        """Rows ``rows`` of the [M, D] matrix at ``X`` -> [len(rows), BLOCK_D], zero outside
        ``row_ok`` x ``d_ok``."""
        return tl.load(X + rows[:, None] * stride_r + offs_d[None, :] * stride_d,
                       mask=row_ok[:, None] & d_ok[None, :], other=0.0)

    @triton.jit(do_not_specialize=_DNS)
    def _infonce_rows_kernel(
        T, P, ROWMAX, LOGSUM, LOSS,
        stride_tb, stride_tm, stride_td,
        stride_pb, stride_pm, stride_pd,
        M, D, M_BUCKET, B_BUCKET,
        BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        DOT_PREC: tl.constexpr,
    ):
        """grid = (B * cdiv(M, BLOCK_M),). With lse_i = logsumexp_j S_ij: ROWMAX[b, i] =
        max_j S_ij, LOGSUM[b, i] = lse_i - ROWMAX, LOSS[b, i] = lse_i - S_ii (float32 [B, M],
        contiguous). M_BUCKET, B_BUCKET: autotune key only."""
        pid_m, b = _program_ids(M, BLOCK_M)
        rows, row_ok = _block_range(pid_m, BLOCK_M, M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d, d_ok = _block_range(0, BLOCK_D, D)
        t = _load_tile(T + b * stride_tb, rows, row_ok, stride_tm, offs_d, d_ok, stride_td)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        diag = tl.zeros([BLOCK_M], dtype=tl.float32)
        for start_n in range(0, M, BLOCK_N):
            cols = start_n + offs_n
            col_ok = cols < M
            p = _load_tile(P + b * stride_pb, cols, col_ok, stride_pm, offs_d, d_ok, stride_pd)
            s = tl.dot(t, tl.trans(p), input_precision=DOT_PREC)  # [BLOCK_M, BLOCK_N]
            s = tl.where(col_ok[None, :], s, float("-inf"))
            diag += tl.sum(tl.where(rows[:, None] == cols[None, :], s, 0.0), 1)
            m_new = tl.maximum(m_i, tl.max(s, 1))
            l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(s - m_new[:, None]), 1)
            m_i = m_new
        log_l = tl.log(l_i)
        tl.store(ROWMAX + b * M + rows, m_i, mask=row_ok)
        tl.store(LOGSUM + b * M + rows, log_l, mask=row_ok)
        tl.store(LOSS + b * M + rows, (m_i - diag) + log_l, mask=row_ok)

    @triton.jit(do_not_specialize=_DNS)
    def _infonce_cols_kernel(
        T, P, ROWMAX, LOGSUM, HIT, DP,
        stride_tb, stride_tm, stride_td,
        stride_pb, stride_pm, stride_pd,
        M, D, M_BUCKET, B_BUCKET, inv_n,
        BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        COMPUTE_GRAD: tl.constexpr, DOT_PREC: tl.constexpr,
    ):
        """grid = (B * cdiv(M, BLOCK_N),). HIT[b, j] = (argmax_i softmax(S)[i, j] == j) (int8
        [B, M]); with COMPUTE_GRAD, DP[b, j] = d nce / d P_j (float32 [B, M, D], contiguous)."""
        pid_n, b = _program_ids(M, BLOCK_N)
        cols, col_ok = _block_range(pid_n, BLOCK_N, M)
        offs_m = tl.arange(0, BLOCK_M)
        offs_d, d_ok = _block_range(0, BLOCK_D, D)
        p = _load_tile(P + b * stride_pb, cols, col_ok, stride_pm, offs_d, d_ok, stride_pd)
        best = tl.full([BLOCK_N], -1.0, dtype=tl.float32)
        arg = tl.zeros([BLOCK_N], dtype=tl.int32)
        acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        for start_m in range(0, M, BLOCK_M):
            rows = start_m + offs_m
            row_ok = rows < M
            t = _load_tile(T + b * stride_tb, rows, row_ok, stride_tm, offs_d, d_ok, stride_td)
            m_i = tl.load(ROWMAX + b * M + rows, mask=row_ok, other=0.0)
            log_l = tl.load(LOGSUM + b * M + rows, mask=row_ok, other=0.0)
            s = tl.dot(t, tl.trans(p), input_precision=DOT_PREC)
            x = (s - m_i[:, None]) - log_l[:, None]  # log p, as torch's log_softmax rounds it
            x = tl.where(col_ok[None, :], x, float("-inf"))  # padded columns: p = 0
            # Comparison key: p * 2^64 (normal floats only), with float32 underflow made exact:
            # below 2^-125 p is rounded to the subnormal grid by hand, k = rint(p * 2^149).
            k = tl.floor(tl.exp(tl.minimum(x, _LOG_TINY) + _LOG_2_149) + 0.5)
            key = tl.where(x < _LOG_TINY, k * _2_POW_M85, tl.exp(x) * _2_POW_64)
            key = tl.where(row_ok[:, None], key, -1.0)
            blk_best, blk_arg = tl.max(key, 0, return_indices=True,
                                       return_indices_tie_break_left=True)
            better = blk_best > best
            best = tl.where(better, blk_best, best)
            arg = tl.where(better, blk_arg + start_m, arg)
            if COMPUTE_GRAD:  # d nce / d S * (B*M), subtracting the diagonal before the dot
                ds = tl.exp(x) - tl.where(rows[:, None] == cols[None, :], 1.0, 0.0)
                ds = tl.where(row_ok[:, None], ds, 0.0)
                if DOT_PREC == "ieee":
                    acc = tl.dot(tl.trans(ds), t, acc, input_precision="ieee")
                else:  # half inputs: ds = hi + lo, two dots keep ~2x the input's mantissa
                    hi = ds.to(t.dtype)
                    lo = (ds - hi.to(tl.float32)).to(t.dtype)
                    acc = tl.dot(tl.trans(hi), t, acc)
                    acc = tl.dot(tl.trans(lo), t, acc)
        tl.store(HIT + b * M + cols, (arg == cols).to(tl.int8), mask=col_ok)
        if COMPUTE_GRAD:
            tl.store(DP + (b * M + cols[:, None]) * D + offs_d[None, :], acc * inv_n,
                     mask=col_ok[:, None] & d_ok[None, :])

    # -- launch configurations ----------------------------------------------------------------
    # Per (input dtype, BLOCK_D): the (BLOCK_M, BLOCK_N, num_warps, num_stages) configs that
    # pass the sm_90 resource report on triton 3.6 and 3.7 (shared memory <= 232,448 B, no
    # spills; the columns kernel with and without the gradient; benchmarks/compile_report.py,
    # docs/kernels_gpu.md), the default (pinned) config first. A (dtype, BLOCK_D) without
    # configs for both kernels runs on the torch path. The autotuner times the listed configs
    # once per (M bucket, B bucket, BLOCK_D, dtype).
    # BLOCK_D <= 256 (the model's D is fshape * tshape = 256): larger feature counts run on the
    # torch path. float32 (IEEE FMA dots) holds a [BLOCK_N, BLOCK_D] float32 gradient
    # accumulator in the columns kernel, so only its 16-column tiles fit.
    _BLOCK_DS = (16, 32, 64, 128, 256)
    ROWS_CONFIGS = config_table(half={bd: [(64, 64, 4, 3), (64, 32, 4, 3)] for bd in _BLOCK_DS},
                                fp32={bd: [(32, 32, 4, 2), (32, 64, 8, 2)] for bd in _BLOCK_DS})
    COLS_CONFIGS = config_table(half={bd: [(32, 32, 4, 3), (32, 64, 4, 2)] for bd in _BLOCK_DS},
                                fp32={bd: [(16, 32, 4, 2)] for bd in _BLOCK_DS})
    _INTERPRET_CONFIG = BlockConfig(32, 32, 4, 1)

    def _config_class(args: dict) -> tuple[str, int]:
        return dtype_name(args["T"].dtype), args["BLOCK_D"]

    _KEY = ["M_BUCKET", "B_BUCKET", "BLOCK_D", "DOT_PREC"]
    #: The raw @triton.jit kernels (for the resource report) and the tuned kernels.
    KERNELS = {"rows": _infonce_rows_kernel, "cols": _infonce_cols_kernel}
    TUNED = {
        "rows": TunedKernel(_infonce_rows_kernel, ROWS_CONFIGS, _config_class, _KEY,
                            TRITON_INTERPRET, _INTERPRET_CONFIG),
        "cols": TunedKernel(_infonce_cols_kernel, COLS_CONFIGS, _config_class,
                            _KEY + ["COMPUTE_GRAD"], TRITON_INTERPRET, _INTERPRET_CONFIG),
    }
else:  # pragma: no cover
    KERNELS, TUNED = {}, {}


def block_d(d: int) -> int:
    """The kernels' BLOCK_D for D features: D rounded up to 16 (the inputs are zero-padded to
    that, which keeps every row 16-element aligned), then to a power of two."""
    return triton.next_power_of_2(-(-d // 16) * 16)


def max_d(dtype: torch.dtype) -> int:
    """The largest D :func:`supports` accepts for ``dtype`` (0: none)."""
    return max((bd for dt, bd in TUNED["cols"].configs if dt == dtype_name(dtype)
                and supports(dtype, bd)), default=0) if HAS_TRITON else 0


def supports(dtype: torch.dtype, d: int) -> bool:
    """Whether the Triton kernels take [B, M, d] inputs of ``dtype``: Triton is importable and
    both kernels have a launch configuration for them that the sm_90 resource report checks.
    (The device and Triton's interpreter are the dispatcher's concern.)"""
    if not HAS_TRITON or d < 1:
        return False
    cls = (dtype_name(dtype), block_d(d))
    return all(cls in t.configs for t in TUNED.values())


def _launch(targets: torch.Tensor, pred: torch.Tensor, compute_grad: bool
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run both kernels: (loss_rows [B, M] f32 = lse_i - S_ii, hits [B, M] bool,
    dpred [B, M, D] f32 = d nce / d pred, or an empty [0] tensor without compute_grad)."""
    B, M, D = pred.shape
    d_pad = -(-D // 16) * 16
    if d_pad != D:  # zero features change no score; keeps every row 16-element aligned
        targets, pred = (torch.nn.functional.pad(t, (0, d_pad - D)) for t in (targets, pred))
    targets, pred = aligned(targets), aligned(pred)
    dev = pred.device
    rowmax = torch.empty((B, M), dtype=torch.float32, device=dev)
    logsum = torch.empty((B, M), dtype=torch.float32, device=dev)
    loss = torch.empty((B, M), dtype=torch.float32, device=dev)
    hits = torch.empty((B, M), dtype=torch.int8, device=dev)
    dpred = torch.empty((B, M, d_pad) if compute_grad else (0,), dtype=torch.float32, device=dev)
    sizes = (M, d_pad, pow2_bucket(M, 16, 1 << 16), pow2_bucket(B, 1, 1024))
    consts = dict(BLOCK_D=block_d(D), DOT_PREC=dot_precision(pred.dtype))
    strides = (*targets.stride(), *pred.stride())
    with device_ctx(pred):
        TUNED["rows"].launch(lambda meta: (B * triton.cdiv(M, meta["BLOCK_M"]),),
                             targets, pred, rowmax, logsum, loss, *strides, *sizes, **consts)
        TUNED["cols"].launch(lambda meta: (B * triton.cdiv(M, meta["BLOCK_N"]),),
                             targets, pred, rowmax, logsum, hits, dpred, *strides, *sizes,
                             1.0 / (B * M), COMPUTE_GRAD=compute_grad, **consts)
    return loss, hits.bool(), dpred[..., :D] if compute_grad else dpred


# ---------------------------------------------------------------------------------------------
# Custom op (opaque to torch.compile, with a fake kernel) and the autograd.Function
# ---------------------------------------------------------------------------------------------


@torch.library.custom_op("ssast_fast::infonce_fwd", mutates_args=())
def _infonce_fwd_op(targets: torch.Tensor, pred: torch.Tensor,
                    compute_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(acc 0-d f32, nce 0-d f32, dpred [B, M, D] f32 = d nce / d pred, or [0] without
    compute_grad)."""
    _require_triton_runtime(pred)
    B, M, _ = pred.shape
    loss, hits, dpred = _launch(targets, pred, compute_grad)
    return hits.sum().float() / (B * M), loss.sum() / (B * M), dpred


@_infonce_fwd_op.register_fake
def _(targets, pred, compute_grad):
    scalar = pred.new_empty((), dtype=torch.float32)
    shape = tuple(pred.shape) if compute_grad else (0,)
    return scalar, scalar.clone(), pred.new_empty(shape, dtype=torch.float32)


class InfoNCEFunction(torch.autograd.Function):
    """(acc, nce) through the Triton kernels, differentiable in ``pred`` (acc has no gradient).

    The forward computes d nce / d pred alongside the loss when pred needs it; the backward
    scales it by the incoming gradient of nce."""

    @staticmethod
    def forward(ctx, targets: torch.Tensor, pred: torch.Tensor):
        acc, nce, dpred = torch.ops.ssast_fast.infonce_fwd(targets, pred, ctx.needs_input_grad[1])
        ctx.save_for_backward(dpred)
        ctx.pred_dtype = pred.dtype
        ctx.mark_non_differentiable(acc)
        return acc, nce

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_acc, grad_nce):
        (dpred,) = ctx.saved_tensors
        return None, (grad_nce * dpred).to(ctx.pred_dtype)


# ---------------------------------------------------------------------------------------------
# Validation and dispatch
# ---------------------------------------------------------------------------------------------


def _require_triton_runtime(t: torch.Tensor) -> None:
    require_triton_runtime(
        t, TRITON_INTERPRET,
        missing="infonce(backend='triton') needs the `triton` package, which is not installed",
        not_cuda="infonce(backend='triton') needs CUDA tensors (got device {device}); on CPU set "
                 "TRITON_INTERPRET=1 before importing ssast_fast, or use backend='torch'")


def _validate(targets: torch.Tensor, pred: torch.Tensor) -> None:
    for name, t in (("targets", targets), ("pred", pred)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"infonce: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3 or not t.dtype.is_floating_point:
            raise ValueError(f"infonce: {name} must be a floating [B, M, D] tensor, got "
                             f"{t.dtype} {tuple(t.shape)}")
    if targets.shape != pred.shape or 0 in pred.shape:
        raise ValueError(f"infonce: targets and pred must have one non-empty shape [B, M, D], got "
                         f"{tuple(targets.shape)} and {tuple(pred.shape)}")
    if targets.dtype != pred.dtype or targets.device != pred.device:
        raise ValueError(f"infonce: targets and pred must share dtype and device, got "
                         f"{targets.dtype}/{targets.device} and {pred.dtype}/{pred.device}")


def _validate_triton(targets: torch.Tensor, pred: torch.Tensor) -> None:
    check_triton_dtype(pred.dtype, "infonce(backend='triton')")
    if HAS_TRITON and not supports(pred.dtype, pred.shape[-1]):
        raise ValueError(f"infonce(backend='triton'): D={pred.shape[-1]} is not supported for "
                         f"{dtype_name(pred.dtype)} inputs (at most {max_d(pred.dtype)}); use "
                         "backend='torch'")
    if targets.requires_grad and torch.is_grad_enabled():
        raise ValueError("infonce(backend='triton'): targets get no gradient; detach them (the "
                         "model does) or use backend='torch'")
    _require_triton_runtime(pred)


# Self-check: pass when the kernel's error <= _CHECK_FACTOR x the torch path's own error in the
# same dtype + a floor (nce: relative; d pred: max abs, relative to its largest entry), and acc
# within two column flips (near-ties).
_CHECK_FACTOR = 4.0
_CHECK_FLOOR = {torch.float32: 1e-5, torch.float16: 1e-4, torch.bfloat16: 1e-3}



def _run_triton(targets: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton kernels (the one launch point of every Triton call here)."""
    return InfoNCEFunction.apply(targets, pred)


def _fwd_bwd(backend: str, targets: torch.Tensor, pred: torch.Tensor, grad: bool
             ) -> list[torch.Tensor]:
    """[acc, nce] (+ [d nce / d pred] with ``grad``) by ``backend``, autocast off."""
    p = pred.detach().requires_grad_(grad)
    with torch.autocast(pred.device.type, enabled=False), torch.set_grad_enabled(grad):
        acc, nce = infonce_torch(targets, p) if backend == "torch" else _run_triton(targets, p)
        if not grad:
            return [acc, nce]
        nce.backward()
    return [acc, nce, p.grad]


def _self_check(device: torch.device, dtype: torch.dtype, D: int) -> Optional[str]:
    """The Triton kernels against float64 torch at B=2, M=70 (full and ragged blocks): acc, nce
    and d pred; None, or what disagreed."""
    B, M = 2, 70
    g = torch.Generator().manual_seed(D)
    t64 = torch.randn(B, M, D, generator=g, dtype=torch.float64).to(dtype).double()
    p64 = (torch.randn(B, M, D, generator=g, dtype=torch.float64) * D ** -0.5).to(dtype).double()
    ref = _fwd_bwd("torch", t64.to(device), p64.to(device), True)
    lowp = (t64.to(dtype).to(device), p64.to(dtype).to(device))
    base = _fwd_bwd("torch", *lowp, True)
    got = _fwd_bwd("triton", *lowp, True)
    if abs(got[0].item() - ref[0].item()) > 2.5 / (B * M):
        return f"acc {got[0].item():.4f}, float64 torch {ref[0].item():.4f}"
    scale = [abs(ref[1].item()), ref[2].abs().max().item()]
    for name, r, b, x, s in zip(("nce", "d pred"), ref[1:], base[1:], got[1:], scale):
        if x.shape != r.shape:
            return f"{name}: shape {tuple(x.shape)}, expected {tuple(r.shape)}"
        err, err_torch = ((t.double() - r).abs().max().item() / s for t in (x, b))
        tol = _CHECK_FACTOR * err_torch + _CHECK_FLOOR[dtype]
        if not err <= tol:  # also catches NaN
            return f"{name}: relative error {err:.3g} vs float64 > {tol:.3g}"
    return None


def _candidates(device: torch.device, dtype: torch.dtype, shape: tuple[int, int, int],
                grad: bool) -> dict:
    """Zero-argument callables running the loss at ``shape`` (B, M, D) on fresh inputs: the
    batched torch path first, then the Triton kernels."""
    targets = torch.randn(shape, device=device, dtype=dtype)
    pred = torch.randn(shape, device=device, dtype=dtype) * shape[-1] ** -0.5
    return {n: functools.partial(_fwd_bwd, n, targets, pred, grad) for n in ("torch", "triton")}


def resolve_backend(pred: torch.Tensor, backend: str = "auto",
                    needs_grad: Optional[bool] = None) -> str:
    """The concrete backend ("triton" | "torch") that :func:`infonce` uses for pred [B, M, D]
    (``needs_grad``: default from pred and grad mode).

    ``auto`` on CUDA: the Triton kernels once they passed their self-check for (dtype, D) on the
    device, if they measured faster than the batched torch path for this (dtype, D, M bucket,
    B bucket, fwd or fwd+bwd) (:mod:`ssast_fast.ops.dispatch`); "torch" elsewhere.
    """
    if backend not in BACKENDS:
        raise ValueError(f"infonce: unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    B, M, D = pred.shape
    name = str(pred.dtype).replace("torch.", "")
    if not dispatch.kernel_device(pred.device):
        dispatch.note("infonce", f"{pred.device.type}, {name}", "torch",
                      "the Triton kernels run on CUDA only")
        return "torch"
    grad = (torch.is_grad_enabled() and pred.requires_grad) if needs_grad is None else needs_grad
    dtype, shape = pred.dtype, (B, M, D)
    return dispatch.resolve_triton(
        "infonce", pred.device, dtype=dtype, D=D, sizes={"M": M, "B": B}, grad=grad,
        supported=HAS_TRITON and supports(dtype, D), interpret=TRITON_INTERPRET,
        fallback="torch", kernel_name="Triton InfoNCE kernel",
        check=lambda: _self_check(pred.device, dtype, D),
        candidates=lambda: _candidates(pred.device, dtype, shape, grad))


def infonce(targets: torch.Tensor, pred: torch.Tensor, backend: str = "auto"
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """SSAST's InfoNCE loss and column-argmax accuracy.

    Args:
        targets: [B, M, D] masked input patches (no gradient on the Triton path).
        pred: [B, M, D] predictions (cpredlayer outputs), same dtype and device.
        backend: "auto" | "triton" | "torch" (see the module docstring).

    Returns:
        (acc, nce): 0-d float32 tensors (float32 accumulation; nce differentiable in pred).
    """
    _validate(targets, pred)
    if backend == "auto" and targets.requires_grad and torch.is_grad_enabled():
        return infonce_torch(targets, pred)  # the kernels give targets no gradient
    if resolve_backend(pred, backend) == "torch":
        return infonce_torch(targets, pred)
    _validate_triton(targets, pred)
    return _run_triton(targets, pred)
