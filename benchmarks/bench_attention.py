"""Attention forward + backward: the Triton kernel vs each SDPA backend vs eager.

GPU (skipped without CUDA): B=24, H=12, D=64 (SSAST-Base), N in {514, 1214}, bfloat16,
    backends triton | sdpa-flash | sdpa-efficient | sdpa-cudnn | sdpa-math | eager.
CPU: B=2, H=3, N=514, D=64 float32, sdpa vs eager (the Triton kernel does not run natively on
    CPU; under TRITON_INTERPRET it is a correctness tool, not something to time); and bfloat16
    at the tiny model's batched joint-step shape B=16, H=3, N=514, D=64: the bf16 CPU kernel
    (backend "amx": oneDNN brgemm on AMX or AVX512-BF16; skipped on CPUs without AVX512-BF16) vs
    sdpa vs eager.

Run: python -m pytest benchmarks/bench_attention.py --benchmark-only
     (do not set TRITON_INTERPRET). extra_info carries TFLOP/s: the forward counts
     4*B*H*N^2*D flops, the backward 2.5x that, so fwd+bwd = 3.5 * 4*B*H*N^2*D.

The helpers below (inputs, backend callables, flop counts) are shared with
benchmarks/gpu_suite.py.
"""
from __future__ import annotations

import contextlib

import pytest
import torch

from ssast_fast.ops import attention as A

# name -> (attention backend, SDPA kernel to force or None)
BACKENDS = {
    "triton": ("triton", None),
    "sdpa-flash": ("sdpa", "FLASH_ATTENTION"),
    "sdpa-efficient": ("sdpa", "EFFICIENT_ATTENTION"),
    "sdpa-cudnn": ("sdpa", "CUDNN_ATTENTION"),
    "sdpa-math": ("sdpa", "MATH"),
    "eager": ("eager", None),
}


def attn_flops(B, H, N, D, bwd: bool) -> float:
    """Matmul flops of attention: forward 4*B*H*N^2*D (QK^T and PV); backward 2.5x that."""
    fwd = 4.0 * B * H * N * N * D
    return fwd * (3.5 if bwd else 1.0)


def sdpa_context(kernel: str | None):
    """Force one SDPA kernel (torch.nn.attention.sdpa_kernel), or a no-op context."""
    if kernel is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, kernel)])


def make_inputs(B, H, N, D, dtype, device, requires_grad=True, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    q, k, v, do = (torch.randn(B, H, N, D, generator=g, device=device, dtype=dtype)
                   for _ in range(4))
    for t in (q, k, v):
        t.requires_grad_(requires_grad)
    return q, k, v, do


def make_step(name: str, q, k, v, do, bwd: bool = True):
    """A zero-argument callable running attention(name) forward (and backward)."""
    backend, kernel = BACKENDS[name]

    def step():
        with sdpa_context(kernel):
            out = A.attention(q, k, v, backend=backend)
            if bwd:
                out.backward(do)
        return out

    return step


def check_runs(step) -> str | None:
    """Run once; return None, or why this backend cannot run these inputs."""
    try:
        step()
    except RuntimeError as e:  # e.g. "No available kernel" for an unsupported dtype / arch
        return str(e).splitlines()[0][:120]
    return None


# ---------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
B_GPU, H_GPU, D_GPU = 24, 12, 64


def _bench_gpu(benchmark, name, N, dtype, bwd):
    q, k, v, do = make_inputs(B_GPU, H_GPU, N, D_GPU, dtype, "cuda", requires_grad=bwd)
    step = make_step(name, q, k, v, do, bwd=bwd)
    why = check_runs(step)  # also autotunes / warms up
    if why is not None:
        pytest.skip(f"{name} unavailable: {why}")

    def timed():
        for t in (q, k, v):
            t.grad = None
        step()
        torch.cuda.synchronize()

    torch.cuda.synchronize()
    benchmark.pedantic(timed, rounds=20, iterations=1, warmup_rounds=3)
    flops = attn_flops(B_GPU, H_GPU, N, D_GPU, bwd)
    benchmark.extra_info.update(
        backend=name, N=N, dtype=str(dtype), device=torch.cuda.get_device_name(),
        tflops_median=flops / benchmark.stats.stats.median / 1e12)


@needs_cuda
@pytest.mark.parametrize("name", list(BACKENDS))
@pytest.mark.parametrize("N", [514, 1214])
def test_gpu_fwd_bwd_bf16(benchmark, name, N):
    _bench_gpu(benchmark, name, N, torch.bfloat16, bwd=True)


@needs_cuda
@pytest.mark.parametrize("name", list(BACKENDS))
@pytest.mark.parametrize("N", [514, 1214])
def test_gpu_fwd_bf16(benchmark, name, N):
    with torch.no_grad():
        _bench_gpu(benchmark, name, N, torch.bfloat16, bwd=False)


# ---------------------------------------------------------------------------------------------
# CPU (runs anywhere)
# ---------------------------------------------------------------------------------------------

B_CPU, H_CPU, N_CPU, D_CPU = 2, 3, 514, 64


@pytest.mark.parametrize("name", ["sdpa-math", "sdpa", "eager"])
def test_cpu_fwd_bwd_fp32(benchmark, name):
    q, k, v, do = make_inputs(B_CPU, H_CPU, N_CPU, D_CPU, torch.float32, "cpu")
    if name == "sdpa":  # let torch choose the CPU kernel (flash-attention for CPU)
        def step():
            A.attention(q, k, v, backend="sdpa").backward(do)
    else:
        step = make_step(name, q, k, v, do, bwd=True)

    def timed():
        for t in (q, k, v):
            t.grad = None
        step()

    benchmark.pedantic(timed, rounds=15, iterations=1, warmup_rounds=2)
    flops = attn_flops(B_CPU, H_CPU, N_CPU, D_CPU, bwd=True)
    benchmark.extra_info.update(backend=name, N=N_CPU, dtype="float32",
                                gflops_median=flops / benchmark.stats.stats.median / 1e9)


@pytest.mark.parametrize("name", ["amx", "sdpa", "eager"])
def test_cpu_fwd_bwd_bf16(benchmark, name):
    from ssast_fast.ops import attention_amx

    if name == "amx" and not attention_amx.available():
        pytest.skip("the amx kernels need the extension and a CPU with AVX512-BF16")
    B, H, N, D = 16, 3, 514, 64
    qkv = torch.randn(B, N, 3, H, D, dtype=torch.bfloat16)  # the model's q, k, v views
    q, k, v = (t.detach().requires_grad_() for t in qkv.permute(2, 0, 3, 1, 4).unbind(0))
    do = torch.randn(B, H, N, D, dtype=torch.bfloat16)

    def step():
        A.attention(q, k, v, backend=name).backward(do)

    def timed():
        for t in (q, k, v):
            t.grad = None
        step()

    benchmark.pedantic(timed, rounds=10, iterations=1, warmup_rounds=2)
    flops = attn_flops(B, H, N, D, bwd=True)
    benchmark.extra_info.update(backend=name, N=N, dtype="bfloat16",
                                gflops_median=flops / benchmark.stats.stats.median / 1e9)
