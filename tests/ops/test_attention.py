"""ssast_fast.ops.attention: the Triton kernel (under TRITON_INTERPRET=1 here) against a float64
eager reference, the torch backends, validation, launch geometry and autotune keys, and the
custom-op / torch.compile integration. (The sm_90 resources: tests/ops/test_compile_report.py.)"""
from __future__ import annotations

import pytest
import torch
from triton_compile import check_gpu_suite_dry_run, check_without_triton, spy_launches

from ssast_fast.ops import attention as A
from ssast_fast.ops.attention import attention

needs_triton = pytest.mark.skipif(not A.HAS_TRITON, reason="triton is not installed")
# Where the Triton kernel can run in this process: CPU tensors under the interpreter, else CUDA.
KERNEL_DEVICE = "cpu" if A.TRITON_INTERPRET else "cuda"
needs_kernel_device = pytest.mark.skipif(
    not A.HAS_TRITON or (not A.TRITON_INTERPRET and not torch.cuda.is_available()),
    reason="the Triton kernel needs TRITON_INTERPRET=1 or a CUDA device")

# An absolute floor on the error bound, far below each dtype's resolution (fp16 eps ~1e-3):
# where the exact gradient vanishes (N == 1: a softmax over one key has zero gradient in q and
# k) eager rounding gives exactly 0 while the kernel's dP - rowsum(dO * O) leaves ~1e-7..1e-6.
ABS_FLOOR = {torch.float32: 1e-6, torch.float16: 1e-5, torch.bfloat16: 1e-4}


def _inputs(B, H, N, D, seed=0, scale_qk=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k, v, do = (torch.randn(B, H, N, D, generator=g, dtype=torch.float64) for _ in range(4))
    return q * scale_qk, k, v, do


def _fwd_bwd(backend, dtype, q, k, v, do, scale=None, device="cpu"):
    """out, dq, dk, dv of attention(backend) at `dtype`, returned as float64 CPU tensors."""
    leaves = [t.detach().to(device=device, dtype=dtype).requires_grad_() for t in (q, k, v)]
    out = attention(*leaves, scale=scale, backend=backend)
    out.backward(do.to(device=device, dtype=dtype))
    return [t.detach().double().cpu() for t in (out, *(x.grad for x in leaves))]


def _max_err(got, ref):
    return [(a - b).abs().max().item() if a.numel() else 0.0 for a, b in zip(got, ref)]


def _check_against_eager(dtype, q, k, v, do, scale=None, factor=2.0):
    """Kernel error vs fp64 <= factor * (same-precision eager error vs fp64) + ABS_FLOOR."""
    ref = _fwd_bwd("eager", torch.float64, q, k, v, do, scale)
    tri = _fwd_bwd("triton", dtype, q, k, v, do, scale, device=KERNEL_DEVICE)
    eag = _fwd_bwd("eager", dtype, q, k, v, do, scale, device=KERNEL_DEVICE)
    e_tri, e_eag = _max_err(tri, ref), _max_err(eag, ref)
    for name, et, ee in zip(("out", "dq", "dk", "dv"), e_tri, e_eag):
        floor = ABS_FLOOR[dtype]
        assert et <= factor * ee + floor, (
            f"{name}: triton error {et:.3e} > {factor} x eager {dtype} error {ee:.3e} + {floor}")
    return e_tri, e_eag


# ---------------------------------------------------------------------------------------------
# Kernel accuracy
# ---------------------------------------------------------------------------------------------


# The (dtype, head dim)s the kernels take, but bfloat16 (the interpreter computes it wrongly)
# and D = 128 (test_triton_head_dim_128).
SUPPORTED = [(dtype, d) for dtype in (torch.float32, torch.float16) for d in (32, 64)
             if A.supports(dtype, d)]


@needs_kernel_device
@pytest.mark.parametrize("dtype, D", SUPPORTED, ids=lambda x: str(x).removeprefix("torch."))
@pytest.mark.parametrize("N", [1, 7, 33, 130])
def test_triton_fwd_bwd_vs_fp64(N, D, dtype):
    B, H = (1, 2) if N > 64 else (2, 2)
    q, k, v, do = _inputs(B, H, N, D, seed=N * 100 + D)
    _check_against_eager(dtype, q, k, v, do)


@needs_kernel_device
@pytest.mark.skipif(A.TRITON_INTERPRET, reason="Triton's interpreter mishandles bfloat16")
@pytest.mark.parametrize("N", [33, 130])
def test_triton_bf16_vs_fp64(N):
    q, k, v, do = _inputs(2, 2, N, 64, seed=N)
    _check_against_eager(torch.bfloat16, q, k, v, do)


@needs_kernel_device
def test_triton_large_logits_and_custom_scale():
    # Scores of order +-100: the online softmax must rescale without overflow.
    q, k, v, do = _inputs(1, 2, 45, 32, seed=3, scale_qk=4.0)
    _check_against_eager(torch.float32, q, k, v, do, scale=0.9)


@needs_kernel_device
def test_triton_head_dim_128():
    q, k, v, do = _inputs(1, 1, 20, 128, seed=5)
    _check_against_eager(torch.float16, q, k, v, do)


def test_float32_head_dim_128_has_no_fitting_config():
    """float32 at D = 128 has no config that fits sm_90 without spills: supports() is false and
    backend='triton' names the reason ('auto' uses SDPA)."""
    assert not A.supports(torch.float32, 128)
    x = torch.randn(1, 2, 8, 128)
    if A.HAS_TRITON:
        with pytest.raises(ValueError, match="D=128 is not supported for float32"):
            attention(x, x, x, backend="triton")


@needs_kernel_device
def test_triton_strided_views_and_broadcast_grad():
    """q, k, v as the model produces them (views of one qkv tensor) and a stride-0 grad."""
    B, N, H, D = 2, 37, 3, 32
    g = torch.Generator().manual_seed(7)
    x = torch.randn(B, N, 3 * H * D, generator=g, dtype=torch.float64)

    def run(dtype, backend, device):
        xx = x.detach().clone().to(device=device, dtype=dtype).requires_grad_()
        q, k, v = xx.reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
        assert not q.is_contiguous()
        out = attention(q, k, v, backend=backend)
        (out.sum() + (out * out).sum()).backward()  # sum() backpropagates an expanded grad
        return [out.detach().double().cpu(), xx.grad.double().cpu()]

    ref = run(torch.float64, "eager", "cpu")
    tri = run(torch.float32, "triton", KERNEL_DEVICE)
    eag = run(torch.float32, "eager", KERNEL_DEVICE)
    for et, ee in zip(_max_err(tri, ref), _max_err(eag, ref)):
        assert et <= 2 * ee + ABS_FLOOR[torch.float32]


@needs_kernel_device
def test_triton_empty_sequence():
    q = torch.randn(1, 2, 0, 32, device=KERNEL_DEVICE, requires_grad=True)
    out = attention(q, q, q, backend="triton")
    assert out.shape == (1, 2, 0, 32)
    out.sum().backward()
    assert q.grad.shape == q.shape


@needs_kernel_device
def test_logsumexp_statistic_and_op_autograd():
    """attention_fwd returns lse2 (base 2); the op itself is differentiable like attention_triton."""
    q, k, v, do = (t.float().to(KERNEL_DEVICE) for t in _inputs(1, 2, 19, 32, seed=11))
    scale = 0.2
    out, lse2 = torch.ops.ssast_fast.attention_fwd(q, k, v, scale)
    ref_lse = torch.logsumexp((q.double() @ k.double().transpose(-2, -1)) * scale, dim=-1)
    torch.testing.assert_close(lse2.double() * torch.log(torch.tensor(2.0, dtype=torch.float64)),
                               ref_lse.cpu(), atol=1e-5, rtol=1e-5)

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        fn(*leaves).backward(do)
        return [t.grad for t in leaves]

    g_op = grads(lambda a, b, c: torch.ops.ssast_fast.attention_fwd(a, b, c, scale)[0])
    g_fn = grads(lambda a, b, c: A.attention_triton(a, b, c, scale))
    for a, b in zip(g_op, g_fn):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------
# torch backends and dispatch
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sdpa", "eager", "auto"])
def test_torch_backends_vs_fp64(backend):
    q, k, v, do = _inputs(2, 3, 50, 64, seed=1)
    ref = _fwd_bwd("eager", torch.float64, q, k, v, do)
    got = _fwd_bwd(backend, torch.float32, q, k, v, do)
    for e in _max_err(got, ref):
        assert e < 1e-5


def test_auto_backend_resolution():
    q = torch.randn(1, 1, 4, 64)
    assert A.resolve_backend(q, "auto") == "sdpa"  # CPU tensors
    assert A.resolve_backend(q, "eager") == "eager"
    with pytest.raises(ValueError, match="unknown backend"):
        A.resolve_backend(q, "flash")
    # Unsupported head dims fall back to SDPA under "auto" and work.
    x = torch.randn(1, 2, 5, 48)
    torch.testing.assert_close(attention(x, x, x), A.attention_eager(x, x, x))


def _bad(shape_q=(1, 2, 8, 32), shape_k=None, dtype=torch.float32, dtype_k=None):
    q = torch.randn(shape_q).to(dtype)
    k = torch.randn(shape_k or shape_q).to(dtype_k or dtype)
    return q, k


@pytest.mark.parametrize("case, exc, match", [
    ("rank3", ValueError, "rank 4"),
    ("shape", ValueError, "same shape"),
    ("dtype_mismatch", TypeError, "share a dtype"),
    ("int_dtype", TypeError, "floating-point"),
    ("not_tensor", TypeError, "torch.Tensor"),
    ("device", ValueError, "one device"),
    ("scale_type", TypeError, "scale"),
    ("scale_nan", ValueError, "finite"),
    ("backend", ValueError, "unknown backend"),
    ("triton_head_dim", ValueError, "head dim D=48"),
    ("triton_float64", TypeError, "float64"),
])
def test_validation_errors(case, exc, match):
    q = torch.randn(1, 2, 8, 32)
    args, kwargs = (q, q, q), {}
    if case == "rank3":
        args = (q[0], q[0], q[0])
    elif case == "shape":
        args = (q, torch.randn(1, 2, 9, 32), q)
    elif case == "dtype_mismatch":
        args = (q, q.half(), q)
    elif case == "int_dtype":
        i = torch.ones(1, 2, 8, 32, dtype=torch.int32)
        args = (i, i, i)
    elif case == "not_tensor":
        args = (q, q.numpy(), q)
    elif case == "device":
        args = (q, torch.empty(1, 2, 8, 32, device="meta"), q)
    elif case == "scale_type":
        kwargs = {"scale": "0.1"}
    elif case == "scale_nan":
        kwargs = {"scale": float("nan")}
    elif case == "backend":
        kwargs = {"backend": "flash"}
    elif case == "triton_head_dim":
        x = torch.randn(1, 2, 8, 48)
        args, kwargs = (x, x, x), {"backend": "triton"}
    elif case == "triton_float64":
        x = q.double()
        args, kwargs = (x, x, x), {"backend": "triton"}
    with pytest.raises(exc, match=match):
        attention(*args, **kwargs)


@needs_triton
def test_triton_backend_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(A, "TRITON_INTERPRET", False)
    q = torch.randn(1, 2, 8, 32)
    with pytest.raises(ValueError, match="CUDA tensors"):
        attention(q, q, q, backend="triton")


def test_import_and_torch_backends_without_triton():
    check_without_triton(
        "from ssast_fast.ops.attention import attention, HAS_TRITON, resolve_backend\n"
        "assert not HAS_TRITON\n"
        "q = torch.randn(1, 2, 5, 32)\n"
        "assert resolve_backend(q) == 'sdpa'\n"
        "attention(q, q, q)",
        "attention(q, q, q, backend='triton')")


# ---------------------------------------------------------------------------------------------
# Custom op and torch.compile
# ---------------------------------------------------------------------------------------------


@needs_kernel_device
def test_opcheck_custom_ops():
    q, k, v, do = (t.float().to(KERNEL_DEVICE) for t in _inputs(1, 2, 9, 32, seed=2))
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    torch.library.opcheck(torch.ops.ssast_fast.attention_fwd.default, (qg, kg, vg, 0.25))
    out, lse2 = torch.ops.ssast_fast.attention_fwd(q, k, v, 0.25)
    torch.library.opcheck(torch.ops.ssast_fast.attention_bwd.default,
                          (do, q, k, v, out, lse2, 0.25))


def _check_compiled_block(B: int, seed: int, **compile_kwargs) -> None:
    """torch.compile(fullgraph=True, **compile_kwargs) of a block around attention(backend=
    "triton") gives the eager block's output and gradients (to 1e-6)."""
    torch._dynamo.reset()
    q, k, v, do = (t.float().to(KERNEL_DEVICE) for t in _inputs(B, 2, 21, 32, seed=seed))

    def block(q, k, v):
        return attention(q * 1.5, k, v, backend="triton").relu()

    def run(fn):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = fn(*leaves)
        out.backward(do)
        return [out.detach(), *(t.grad for t in leaves)]

    compiled = torch.compile(block, fullgraph=True, **compile_kwargs)
    for a, b in zip(run(compiled), run(block)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@needs_kernel_device
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_torch_compile_fullgraph(dynamic):
    """fullgraph=True: no graph break; aot_eager traces the forward and backward through the
    fake kernels and runs the real ones."""
    _check_compiled_block(2, seed=4, backend="aot_eager", dynamic=dynamic)


# ---------------------------------------------------------------------------------------------
# Launch geometry, autotune keys, supports()
# ---------------------------------------------------------------------------------------------


@needs_kernel_device
def test_launch_grid_is_one_axis_with_every_block(monkeypatch):
    """B * H and the blocks share grid axis 0 (no 65,535 cap on B * H); sizes go in as the
    autotune key's buckets."""
    launches = spy_launches(monkeypatch, A.TUNED)
    B, H, N = 3, 5, 40
    x = torch.randn(B, H, N, 32, device=KERNEL_DEVICE, requires_grad=True)
    attention(x, x, x, backend="triton").sum().backward()
    assert [n for n, *_ in launches] == ["fwd", "bwd_dkdv", "bwd_dq"]
    for name, grid, args, _ in launches:
        block = 32 if name == "bwd_dkdv" else 16
        assert grid == (B * H * -(-N // block),)
        assert args[-4:] == (H, N, 64, 16)  # H, N_CTX, N bucket, B*H bucket


def test_autotune_key_has_shape_buckets():
    if not A.HAS_TRITON:
        pytest.skip("triton is not installed")
    for tuned in A.TUNED.values():
        assert tuned._tuner.keys == ["N_BUCKET", "BH_BUCKET", "HEAD_DIM", "DOT_PREC"]
    # A bucket is tuned once: N 500 and 514 share one; B*H 8 and 288 do not.
    assert A._launch_args(2, 4, 500)[2:] == (512, 8)
    assert A._launch_args(2, 4, 514)[2:] == (1024, 8)
    assert A._launch_args(24, 12, 514)[2:] == (1024, 512)


def test_supports_dtype_and_head_dim():
    assert A.supports(torch.float16, 64) == A.HAS_TRITON
    assert A.supports(torch.bfloat16, 64) == A.HAS_TRITON
    for d in (16, 48, 96, 256):
        assert not A.supports(torch.float16, d)
    assert not A.supports(torch.float64, 64)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        for d in A.SUPPORTED_HEAD_DIMS:
            cls = (str(dtype).removeprefix("torch."), d)
            assert A.supports(dtype, d) == (A.HAS_TRITON and all(
                cls in t.configs for t in A.TUNED.values()))


@needs_kernel_device
@pytest.mark.slow
def test_torch_compile_inductor_fullgraph():
    """The default (inductor) backend also compiles around the op without graph breaks."""
    _check_compiled_block(1, seed=6)


@needs_triton
def test_gpu_suite_attention_sections_dry_run():
    """benchmarks/gpu_suite.py's attention sections run end to end on CPU (interpreter)."""
    check_gpu_suite_dry_run("attention")


@needs_kernel_device
def test_triton_under_autocast_casts_like_sdpa():
    """Under autocast the Triton path runs in the autocast dtype (mixed input dtypes allowed)
    and gradients reach the float32 leaves."""
    q, k, v, do = (t.float().to(KERNEL_DEVICE) for t in _inputs(1, 2, 24, 32, seed=9))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    with torch.autocast(KERNEL_DEVICE, dtype=torch.float16):
        out = attention(leaves[0], leaves[1].half(), leaves[2], backend="triton")
        ref = attention(q.half(), k.half(), v.half(), backend="triton")
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    out.backward(do.half())
    assert all(t.grad is not None and t.grad.dtype == torch.float32 for t in leaves)
