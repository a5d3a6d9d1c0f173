"""ssast_fast.ops.layer_norm: the fused LayerNorm -> bf16 kernel against torch's LayerNorm
followed by the cast (forward, dx, dweight, dbias), the encoder's dispatch, validation and the
custom-op integration."""
from __future__ import annotations

import pytest
import torch

from ssast_fast import _ext
from ssast_fast.ops import layer_norm as L

needs_kernel = pytest.mark.skipif(not L.available(), reason="needs the built extension and a CPU with AVX512-BF16")


def _case(shape, seed):
    g = torch.Generator().manual_seed(seed)
    C = shape[-1]
    x = torch.randn(*shape, generator=g) * 3 + 1
    w, b = torch.randn(C, generator=g), torch.randn(C, generator=g)
    dy = torch.randn(*shape, generator=g).to(torch.bfloat16)
    return x, w, b, dy


def _torch_ref(x, w, b, dy, eps):
    leaves = [t.detach().double().requires_grad_() for t in (x, w, b)]
    y = torch.nn.functional.layer_norm(leaves[0], (x.shape[-1],), leaves[1], leaves[2], eps)
    y.backward(dy.double())
    return y.detach(), *(t.grad for t in leaves)


@needs_kernel
@pytest.mark.parametrize("shape", [(16, 514, 192), (3, 7, 100), (2, 5, 768), (4, 33), (1, 16), (2, 3, 17)])
@pytest.mark.parametrize("eps", [1e-6, 1e-5])
def test_matches_float64_layer_norm(shape, eps):
    """y within one bf16 rounding of the exact value; dx, dweight, dbias within float32 noise of
    float64 (and no worse than torch's float32 LayerNorm)."""
    x, w, b, dy = _case(shape, seed=sum(shape))
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y = L.layer_norm_bf16(*leaves, eps)
    y.backward(dy)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    ref_y, ref_dx, ref_dw, ref_db = _torch_ref(x, w, b, dy, eps)
    torch.testing.assert_close(y.double(), ref_y, rtol=2 ** -8, atol=1e-6)  # bf16 resolution
    t32 = [t.clone().requires_grad_() for t in (x, w, b)]
    torch.nn.functional.layer_norm(t32[0], (x.shape[-1],), t32[1], t32[2], eps).backward(dy.float())
    for got, f32, ref in zip((leaves[0].grad, leaves[1].grad, leaves[2].grad), (t.grad for t in t32),
                             (ref_dx, ref_dw, ref_db)):
        err = (got.double() - ref).abs().max().item()
        err32 = (f32.double() - ref).abs().max().item()
        assert err <= 4 * err32 + 1e-5 * ref.abs().max().item(), (err, err32)


@needs_kernel
def test_bf16_output_equals_torch_then_cast_almost_everywhere():
    x, w, b, _ = _case((8, 514, 192), seed=1)
    y = L.layer_norm_bf16(x, w, b, 1e-6)
    want = torch.nn.functional.layer_norm(x, (192,), w, b, 1e-6).to(torch.bfloat16)
    differ = (y != want)
    assert differ.float().mean().item() < 1e-3  # float32 rounding inside the norm: rare ties
    torch.testing.assert_close(y[differ].float(), want[differ].float(), rtol=2 ** -7, atol=0)


@needs_kernel
def test_dispatch_under_autocast_only():
    norm = torch.nn.LayerNorm(64, eps=1e-6)
    x = torch.randn(2, 10, 64)
    assert L.norm_for_linear(norm, x).dtype == torch.float32  # no autocast: the module itself
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert L.norm_for_linear(norm, x).dtype == torch.bfloat16
        with _ext.pure():
            assert L.norm_for_linear(norm, x).dtype == torch.float32  # autocast casts later
    with torch.autocast("cpu", dtype=torch.float16):
        assert L.norm_for_linear(norm, x).dtype == torch.float32


@needs_kernel
def test_opcheck_and_compile():
    x, w, b, dy = _case((3, 9, 40), seed=4)
    torch.library.opcheck(torch.ops.ssast_fast.layer_norm_bf16_fwd, (x, w, b, 1e-6))
    _, mean, rstd = torch.ops.ssast_fast.layer_norm_bf16_fwd(x, w, b, 1e-6)
    torch.library.opcheck(torch.ops.ssast_fast.layer_norm_bf16_bwd, (dy, x, mean, rstd, w))
    compiled = torch.compile(L.layer_norm_bf16, backend="aot_eager", fullgraph=True)
    a = x.clone().requires_grad_()
    compiled(a, w, b, 1e-6).backward(dy)
    e = x.clone().requires_grad_()
    L.layer_norm_bf16(e, w, b, 1e-6).backward(dy)
    assert torch.equal(a.grad, e.grad)


def test_validation():
    w, b = torch.ones(8), torch.zeros(8)
    with pytest.raises(TypeError, match="float32"):
        L.layer_norm_bf16(torch.randn(2, 8).double(), w, b, 1e-6)
    with pytest.raises(ValueError, match=r"\[C\]"):
        L.layer_norm_bf16(torch.randn(2, 8), torch.ones(7), b, 1e-6)


def _add_ln_unfused(x, h, w, b, eps):
    s = x + h  # float32 + bf16 promotes to float32, as in the encoder's residual add
    return s, torch.nn.functional.layer_norm(s, (x.shape[-1],), w, b, eps).to(torch.bfloat16)


@needs_kernel
@pytest.mark.parametrize("use", ["both", "s_only", "y_only"])
@pytest.mark.parametrize("shape", [(16, 514, 192), (3, 5, 40), (2, 17)])
def test_add_layer_norm_matches_unfused(use, shape):
    """s = x + h exactly; y within bf16 rounding; dx, dh, dweight, dbias as autograd computes
    them for the unfused ops (dh = bf16(dx): the gradient of the promoted bf16 operand)."""
    x, w, b, dy = _case(shape, seed=len(use) + sum(shape))
    g = torch.Generator().manual_seed(9)
    h = torch.randn(*shape, generator=g).to(torch.bfloat16)
    ds = torch.randn(*shape, generator=g)

    def run(fn):
        leaves = [t.clone().requires_grad_() for t in (x, h, w, b)]
        s, y = fn(*leaves, 1e-6)
        loss = 0
        if use != "y_only":
            loss = loss + (s * ds).sum()
        if use != "s_only":
            loss = loss + (y.float() * dy.float()).sum()
        loss.backward()
        return s.detach(), y.detach(), [t.grad for t in leaves]

    s1, y1, g1 = run(L.add_layer_norm_bf16)
    s2, y2, g2 = run(_add_ln_unfused)
    assert torch.equal(s1, s2)
    torch.testing.assert_close(y1.float(), y2.float(), rtol=2 ** -7, atol=1e-6)
    for name, a, e in zip(("x", "h", "weight", "bias"), g1, g2):
        if e is None:
            assert a is None or not a.any(), name
            continue
        assert a.dtype == e.dtype, name
        scale = e.float().abs().max().clamp_min(1e-6)
        err = ((a.float() - e.float()).abs().max() / scale).item()
        # dh is bf16: both sides round their float32 dx once, so they differ by at most one bf16
        # ulp (<= 2^-7 of the value, hence of the max); dx, dweight, dbias are float32 up to
        # summation order.
        bound = 2 ** -7 if name == "h" else 1e-5
        assert err <= bound, (name, err, bound)


@needs_kernel
def test_encoder_fused_schedule_as_accurate_as_plain_blocks(monkeypatch):
    """Under CPU bf16 autocast the encoder fuses each residual add with the next LayerNorm. The
    forward equals the plain block loop to bf16 accuracy, and against fp32 every gradient's error
    is within 2x of the plain loop's bf16 error (plus a small floor)."""
    from ssast_fast import ASTModel
    from ssast_fast.model import encoder as E

    torch.manual_seed(0)
    model = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=128,
                     model_size="tiny", attn_backend="sdpa")
    x = torch.randn(2, 128, 128)
    idx = torch.stack([torch.randperm(model.num_patches)[:20] for _ in range(2)])

    def run(bf16=True):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            _, nce, mse = model.joint_losses(x, idx, idx.flip(1))
        (nce + 10 * mse).backward()
        return torch.stack([nce, mse]).detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                                  if p.grad is not None}

    ref_l, ref_g = run(bf16=False)
    fused_l, fused_g = run()
    monkeypatch.setattr(E.layer_norm, "resolve_backend", lambda x, backend="auto", *, norm: "torch")
    monkeypatch.setattr(L, "_CPU_OK", False)
    plain_l, plain_g = run()
    torch.testing.assert_close(fused_l, plain_l, rtol=5e-3, atol=0)
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    for name, e in ref_g.items():
        if name == "cpredlayer.2.bias":  # analytically zero
            continue
        assert rel(fused_g[name], e) <= 2 * rel(plain_g[name], e) + 0.02, name


@needs_kernel
def test_fused_encoder_compiles_fullgraph_under_autocast():
    """joint_losses under CPU bf16 autocast (fused norms, and the bf16 CPU attention kernel where present)
    traces as one graph and computes what eager computes."""
    from ssast_fast import ASTModel
    from ssast_fast.masking import sample_masks

    torch.manual_seed(0)
    model = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=128,
                     model_size="tiny", mask_mode="fast")
    x = torch.randn(2, 128, 128)
    i1, i2 = (sample_masks(2, model.num_patches, 20, model.t_dim) for _ in range(2))
    compiled = torch.compile(model.joint_losses, backend="aot_eager", fullgraph=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = compiled(x, i1, i2)
        want = model.joint_losses(x, i1, i2)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_resolve_backend_choices():
    """auto: the fused kernels under CPU bf16 autocast only (and recorded); explicit choices."""
    from ssast_fast.ops import dispatch

    norm = torch.nn.LayerNorm(64, eps=1e-6)
    x = torch.randn(2, 10, 64)
    dispatch.reset()
    assert L.resolve_backend(x, norm=norm) == "torch"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert L.resolve_backend(x, norm=norm) == ("cpp" if L.available() else "torch")
        assert L.resolve_backend(x, "torch", norm=norm) == "torch"
    assert {d["op"] for d in dispatch.record()} == {"layer_norm"}
    dispatch.reset()
    with pytest.raises(ValueError, match="unknown backend"):
        L.resolve_backend(x, "triton", norm=norm)
    with pytest.raises(ValueError, match="float32 CPU input"):
        L.resolve_backend(x.double(), "cpp", norm=norm)
