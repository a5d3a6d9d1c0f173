"""ssast_fast.ops.attention_amx: the bf16 CPU attention kernels (oneDNN brgemm on AMX or on
AVX512-BF16) against a float64 reference, their error judged against same-precision eager and
SDPA, dispatch, validation, the custom-op integration (opcheck, torch.compile) and the model
under bf16 autocast.

The tests run the path this CPU takes (``X.isa()``). On an AMX CPU the AVX512-BF16 path is
forced in a subprocess (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``) and the kernel tests run again
there; a CPU without AMX cannot run the AMX path, and the AMX test says so when it skips.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssast_fast import ASTModel, _ext
from ssast_fast.ops import attention_amx as X
from ssast_fast.ops.attention import attention, resolve_backend

needs_kernel = pytest.mark.skipif(not X.available(), reason="needs the built extension (not forced pure), a CPU "
                                  "with AVX512-BF16 and a bf16 brgemm that passes its self-test")
FORCED_ISA = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()


def _cpu_has_amx() -> bool:
    """AMX-BF16 in the CPU flags (Linux's /proc/cpuinfo)."""
    try:
        return any(ln.startswith("flags") and "amx_bf16" in ln.split() for ln in open("/proc/cpuinfo"))
    except OSError:
        return False


def _qkv(B, H, N, D, seed=0, logit_scale=1.0):
    """q, k, v as the model makes them: [B, H, N, D] views of one [B, N, 3, H, D] tensor."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(B, N, 3, H, D, generator=g, dtype=torch.float64)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return q * logit_scale, k, v, torch.randn(B, H, N, D, generator=g, dtype=torch.float64)


def _run(backend, dtype, q, k, v, do, scale=None, noncontig=True):
    base = [t.to(dtype) for t in (q, k, v)]
    if not noncontig:
        base = [t.contiguous() for t in base]
    leaves = [t.detach().requires_grad_() for t in base]
    out = attention(*leaves, scale=scale, backend=backend)
    out.backward(do.to(dtype))
    return [t.detach().double() for t in (out, *(x.grad for x in leaves))]


def _err(got, ref):
    return [(a - b).abs().max().item() if a.numel() else 0.0 for a, b in zip(got, ref)]


SHAPES = [(2, 3, 514, 64), (1, 2, 37, 32), (2, 1, 130, 128), (3, 2, 65, 64), (1, 1, 1, 64), (1, 4, 200, 2),
          (2, 2, 64, 64), (1, 1, 127, 96)]


@needs_kernel
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("noncontig", [True, False])
def test_matches_float64_within_same_precision_error(shape, noncontig):
    """Kernel error vs fp64 <= 1.5 x (best of eager / SDPA in bf16) + 1e-4, for out, dq, dk, dv."""
    q, k, v, do = _qkv(*shape, seed=sum(shape))
    ref = _run("eager", torch.float64, q, k, v, do)
    amx = _run("amx", torch.bfloat16, q, k, v, do, noncontig=noncontig)
    eager = _err(_run("eager", torch.bfloat16, q, k, v, do), ref)
    sdpa = _err(_run("sdpa", torch.bfloat16, q, k, v, do), ref)
    for name, e, e1, e2 in zip(("out", "dq", "dk", "dv"), _err(amx, ref), eager, sdpa):
        assert e <= 1.5 * min(e1, e2) + 1e-4, f"{name}: amx {e:.3e} vs eager {e1:.3e} / sdpa {e2:.3e}"


@needs_kernel
@pytest.mark.parametrize("logit_scale, scale", [(4.0, None), (1.0, 0.5), (1.0, -0.3), (30.0, None)])
def test_peaked_and_custom_scale_softmax(logit_scale, scale):
    """Near one-hot rows (large logits), an explicit scale and a negative one stay accurate."""
    q, k, v, do = _qkv(2, 2, 150, 64, seed=7, logit_scale=logit_scale)
    ref = _run("eager", torch.float64, q, k, v, do, scale)
    amx = _run("amx", torch.bfloat16, q, k, v, do, scale)
    sdpa = _err(_run("sdpa", torch.bfloat16, q, k, v, do, scale), ref)
    for name, e, e2 in zip(("out", "dq", "dk", "dv"), _err(amx, ref), sdpa):
        assert torch.isfinite(torch.tensor(e)) and e <= 1.5 * e2 + 1e-3 * max(1.0, logit_scale), (name, e, e2)


@needs_kernel
def test_lse_and_output_layout():
    q, k, v, _ = _qkv(2, 3, 70, 64, seed=3)
    qb, kb, vb = (t.to(torch.bfloat16) for t in (q, k, v))
    out, lse = torch.ops.ssast_fast.attention_amx_fwd(qb, kb, vb, 0.125)
    want = torch.logsumexp(qb.double() @ kb.double().transpose(-2, -1) * 0.125, dim=-1)
    assert lse.dtype == torch.float32 and lse.shape == (2, 3, 70)
    torch.testing.assert_close(lse.double(), want, rtol=0, atol=2e-5)
    assert out.transpose(1, 2).is_contiguous()  # [B, N, H, D] memory: the projection reads it as is


@needs_kernel
def test_empty_sequence():
    q = torch.zeros(2, 3, 0, 64, dtype=torch.bfloat16, requires_grad=True)
    out = attention(q, q, q, backend="amx")
    assert out.shape == (2, 3, 0, 64)
    out.sum().backward()
    assert q.grad.shape == q.shape


@needs_kernel
def test_opcheck_and_compile():
    q, k, v, do = (t.to(torch.bfloat16) for t in _qkv(1, 2, 40, 32, seed=5))
    torch.library.opcheck(torch.ops.ssast_fast.attention_amx_fwd, (q, k, v, 0.2))
    out, lse = torch.ops.ssast_fast.attention_amx_fwd(q, k, v, 0.2)
    torch.library.opcheck(torch.ops.ssast_fast.attention_amx_bwd, (do, q, k, v, out, lse, 0.2))

    def f(q, k, v):
        return attention(q, k, v, backend="auto")

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    got = compiled(*leaves)
    got.backward(do)
    want_leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    want = attention(*want_leaves, backend="amx")
    want.backward(do)
    assert torch.equal(got, want)
    for a, b in zip(leaves, want_leaves):
        assert torch.equal(a.grad, b.grad)


@needs_kernel
def test_auto_dispatch():
    q = torch.randn(1, 2, 10, 64)
    assert resolve_backend(q.to(torch.bfloat16)) == "amx"
    assert resolve_backend(q) == "sdpa"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert resolve_backend(q) == "amx"
        out = attention(q, q, q)  # float32 inputs, cast to bf16 as SDPA would under autocast
    assert out.dtype == torch.bfloat16
    assert resolve_backend(torch.randn(1, 2, 10, 63, dtype=torch.bfloat16)) == "sdpa"  # odd head dim
    with _ext.pure():
        assert resolve_backend(q.to(torch.bfloat16)) == "sdpa"


def test_validation():
    q32 = torch.randn(1, 2, 8, 64)
    with pytest.raises(TypeError, match="bfloat16"):
        attention(q32, q32, q32, backend="amx")
    odd = torch.randn(1, 2, 8, 63, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="head dim"):
        attention(odd, odd, odd, backend="amx")
    if not X.available():
        with pytest.raises(RuntimeError, match="AVX512-BF16"):
            attention(q32.bfloat16(), q32.bfloat16(), q32.bfloat16(), backend="amx")


@needs_kernel
def test_model_bf16_autocast_amx_as_accurate_as_sdpa():
    """Tiny model, joint losses and every gradient under bf16 autocast, measured against fp32:
    the amx attention's error is within 2x of SDPA's bf16 error (plus a small floor)."""
    torch.manual_seed(0)
    model = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=256,
                     model_size="tiny", attn_backend="sdpa")
    x = torch.randn(2, 256, 128)
    g = torch.Generator().manual_seed(1)
    idx = torch.stack([torch.randperm(model.num_patches, generator=g)[:40] for _ in range(2)])

    def losses(backend, bf16=True):
        model.set_attn_backend(backend)
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            _, nce, mse = model.joint_losses(x, idx, idx.flip(1))
        (nce + 10 * mse).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return torch.stack([nce.detach(), mse.detach()]), grads

    ref_l, ref_g = losses("sdpa", bf16=False)
    sdpa_l, sdpa_g = losses("sdpa")
    amx_l, amx_g = losses("amx")
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    assert rel(amx_l, ref_l) <= 2 * rel(sdpa_l, ref_l) + 1e-4
    for name in ref_g:
        if name == "cpredlayer.2.bias":  # analytically zero: rounding noise on every side
            continue
        e_amx, e_sdpa = rel(amx_g[name], ref_g[name]), rel(sdpa_g[name], ref_g[name])
        assert e_amx <= 2 * e_sdpa + 0.02, (name, e_amx, e_sdpa)


@needs_kernel
def test_no_grad_forward_matches():
    q, k, v, _ = (t.to(torch.bfloat16) for t in _qkv(2, 3, 99, 64, seed=11))
    with torch.no_grad():
        plain = attention(q, k, v, backend="amx")
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    assert torch.equal(attention(*leaves, backend="amx").detach(), plain)


@pytest.mark.parametrize("backend", ["amx", "sdpa", "eager"])
def test_packed_layout_matches_unpacked(backend):
    """attention_packed(qkv [B, N, 3, H, D]) == attention on the permuted views, transposed back,
    forward and gradient of qkv (amx: the packed backward writes d qkv in place)."""
    from ssast_fast.ops.attention import attention_packed

    if backend == "amx" and not X.available():  # no kernel here: a clear error, never a silent fallback
        with pytest.raises(RuntimeError, match="AVX512-BF16"):
            attention_packed(torch.randn(1, 4, 3, 2, 8).to(torch.bfloat16), backend="amx")
        return

    dtype = torch.bfloat16 if backend == "amx" else torch.float32
    g = torch.Generator().manual_seed(3)
    B, N, H, D = 2, 77, 3, 64
    qkv = torch.randn(B, N, 3, H, D, generator=g).to(dtype).requires_grad_()
    do = torch.randn(B, N, H * D, generator=g).to(dtype)
    got = attention_packed(qkv, backend=backend)
    got.backward(do)
    ref_in = qkv.detach().clone().requires_grad_()
    q, k, v = ref_in.permute(2, 0, 3, 1, 4).unbind(0)
    want = attention(q, k, v, backend=backend).transpose(1, 2).reshape(B, N, H * D)
    want.backward(do)
    assert torch.equal(got, want)
    assert torch.equal(qkv.grad, ref_in.grad)


@needs_kernel
def test_packed_ops_opcheck_and_compile():
    from ssast_fast.ops.attention import attention_packed

    qkv = torch.randn(1, 40, 3, 2, 32).to(torch.bfloat16)
    torch.library.opcheck(torch.ops.ssast_fast.attention_amx_packed_fwd, (qkv, 0.2))
    out, lse = torch.ops.ssast_fast.attention_amx_packed_fwd(qkv, 0.2)
    do = torch.randn_like(out)
    torch.library.opcheck(torch.ops.ssast_fast.attention_amx_packed_bwd, (do, qkv, out, lse, 0.2))
    compiled = torch.compile(attention_packed, backend="aot_eager", fullgraph=True)
    a = qkv.clone().requires_grad_()
    compiled(a).sum().backward()
    b = qkv.clone().requires_grad_()
    attention_packed(b).sum().backward()
    assert torch.equal(a.grad, b.grad)


def test_packed_validation():
    from ssast_fast.ops.attention import attention_packed

    with pytest.raises(ValueError, match=r"\[B, N, 3, H, D\]"):
        attention_packed(torch.randn(2, 5, 4, 2, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        attention_packed([1, 2, 3])


# ---- which brgemm path runs, and the other one in a subprocess -------------------------------


def _run_here(env: dict, *args: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, *args], cwd=root, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=900)


@needs_kernel
def test_isa_names_the_path_this_cpu_takes():
    if FORCED_ISA.startswith("AVX512_CORE_BF16"):
        assert X.isa() == "avx512_bf16"
    elif _cpu_has_amx() and not FORCED_ISA:
        assert X.isa() == "amx"
    else:
        assert X.isa() in ("amx", "avx512_bf16")


def test_amx_path():
    """On an AMX CPU (and not forced off) the kernels run on AMX tiles."""
    if not _cpu_has_amx():
        pytest.skip("this CPU has no AMX-BF16: the AMX path cannot run here (the AVX512-BF16 path is what the "
                    "other tests in this file ran)")
    if FORCED_ISA:
        pytest.skip(f"ONEDNN_MAX_CPU_ISA={FORCED_ISA} keeps oneDNN off AMX in this process")
    assert X.available() and X.isa() == "amx"


def test_avx512_bf16_path_in_subprocess():
    """The kernel tests again with oneDNN limited to AVX512-BF16 (no AMX): the path of AMD Zen 4/5
    and Intel Cooper Lake. Needed only where this process runs on AMX."""
    if not X.available() or X.isa() != "amx":
        pytest.skip(f"this process runs the {X.isa()!r} path itself: the tests above covered it")
    r = _run_here({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                  __file__, "-k", "not subprocess and not amx_path and not model_bf16")
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0 and "passed" in summary and "skipped" not in summary, r.stdout[-4000:] + r.stderr[-2000:]


def test_gate_without_bf16_brgemm_falls_back_in_subprocess():
    """With oneDNN limited below AVX-512 there is no bf16 brgemm: the self-test fails, the kernels
    report unavailable, "auto" resolves to SDPA and backend="amx" raises a clear error."""
    if _ext.get() is None:
        pytest.skip("needs the built extension (its self-test is what this checks)")
    code = (
        "import torch\n"
        "from ssast_fast.ops import attention_amx as X\n"
        "from ssast_fast.ops.attention import attention, resolve_backend\n"
        "q = torch.randn(1, 2, 10, 64, dtype=torch.bfloat16)\n"
        "assert not X.available() and X.isa() == 'none', (X.available(), X.isa())\n"
        "assert resolve_backend(q) == 'sdpa'\n"
        "try:\n"
        "    attention(q, q, q, backend='amx')\n"
        "    raise SystemExit('no error')\n"
        "except RuntimeError as e:\n"
        "    assert 'AVX512-BF16' in str(e), e\n"
        "print('ok')\n"
    )
    r = _run_here({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "-c", code)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-2000:]
