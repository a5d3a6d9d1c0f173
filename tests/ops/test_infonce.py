"""ssast_fast.ops.infonce: the fused Triton kernels (under TRITON_INTERPRET=1 here) against the
torch reference and a float64 reference, heavy underflow / column-argmax ties, feature counts
that are not multiples of 16, golden parity through the model (forward and gradients), launch
geometry and autotune keys, custom op / torch.compile. (The sm_90 resources:
tests/ops/test_compile_report.py.)
"""
from __future__ import annotations

import pytest
import torch
from triton_compile import check_gpu_suite_dry_run, check_without_triton, spy_launches

from ssast_fast.ops import infonce as I
from ssast_fast.ops.infonce import infonce

needs_triton = pytest.mark.skipif(not I.HAS_TRITON, reason="triton is not installed")
# Where the kernels run in this process: CPU tensors under the interpreter, else CUDA.
DEV = "cpu" if I.TRITON_INTERPRET else "cuda"
needs_kernel_device = pytest.mark.skipif(
    not I.HAS_TRITON or (not I.TRITON_INTERPRET and not torch.cuda.is_available()),
    reason="the Triton kernels need TRITON_INTERPRET=1 or a CUDA device")


def _inputs(B, M, D, dtype, seed, scale=1.0):
    """targets, pred [B, M, D] rounded to dtype; targets ~ N(0, scale^2), pred ~ N(0, 1/D)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(B, M, D, generator=g, dtype=torch.float64) * scale
    p = torch.randn(B, M, D, generator=g, dtype=torch.float64) * D ** -0.5
    return t.to(dtype), p.to(dtype)


def _run(backend, targets, pred, device=None, compute_dtype=None):
    """(acc, nce, d pred) of infonce(backend); nce and d pred as float64 CPU tensors."""
    device = device or DEV
    t = targets.to(device=device, dtype=compute_dtype or targets.dtype)
    p = pred.to(device=device, dtype=compute_dtype or pred.dtype).clone().requires_grad_()
    acc, nce = infonce(t, p, backend=backend)
    nce.backward()
    return acc.item(), nce.detach().double().cpu(), p.grad.double().cpu()


def _ref_hits(targets, pred):
    s = torch.bmm(targets.float(), pred.float().transpose(1, 2))
    return torch.softmax(s, -1).argmax(1) == torch.arange(s.shape[-1])


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


# ---------------------------------------------------------------------------------------------
# Kernel accuracy
# ---------------------------------------------------------------------------------------------

SHAPES = [(1, 5, 32), (3, 40, 256), (3, 50, 32), (1, 50, 256)]


@needs_kernel_device
@pytest.mark.parametrize("B, M, D", SHAPES)
def test_fp32_vs_torch(B, M, D):
    targets, pred = _inputs(B, M, D, torch.float32, seed=B * 1000 + M + D)
    acc, nce, grad = _run("triton", targets, pred)
    acc_t, nce_t, grad_t = _run("torch", targets, pred, device="cpu")
    hits = I._launch(targets.to(DEV), pred.to(DEV), False)[1].cpu()
    assert torch.equal(hits, _ref_hits(targets, pred)) and acc == acc_t
    assert _rel(nce, nce_t) <= 1e-6
    assert _rel(grad, grad_t) <= 1e-5


@needs_kernel_device
@pytest.mark.parametrize("B, M, D", SHAPES)
def test_fp16_vs_fp64(B, M, D):
    """fp16 inputs: error vs float64 (same rounded inputs) <= 2x torch's fp16-input error."""
    targets, pred = _inputs(B, M, D, torch.float16, seed=B * 1000 + M + D)
    _, nce64, grad64 = _run("torch", targets, pred, device="cpu", compute_dtype=torch.float64)
    acc, nce, grad = _run("triton", targets, pred)
    acc_t, nce_t, grad_t = _run("torch", targets, pred, device="cpu")
    assert acc == acc_t and torch.equal(I._launch(targets.to(DEV), pred.to(DEV), False)[1].cpu(),
                                        _ref_hits(targets, pred))
    assert abs(nce - nce64) <= 2 * abs(nce_t - nce64) + 1e-6 * abs(nce64)
    err, err_t = (grad - grad64).abs().max(), (grad_t - grad64).abs().max()
    assert err <= 2 * err_t, (err, err_t)


@needs_kernel_device
def test_heavy_underflow_column_ties():
    """Scores of a few thousand: 96% of the softmax entries underflow to 0 (some to subnormals),
    so many columns tie and must resolve to the first maximal row exactly as torch does."""
    targets, pred = _inputs(3, 50, 32, torch.float32, seed=5, scale=300.0)
    s = torch.bmm(targets, pred.transpose(1, 2))
    sm = torch.softmax(s, -1)
    all_zero = (sm == 0).all(dim=1)  # [B, M] columns that resolve to row 0 by the tie rule
    assert all_zero.sum() >= 20 and (sm.argmax(1)[all_zero] == 0).all()
    assert (sm.argmax(1) != torch.log_softmax(s, -1).argmax(1)).sum() >= 20  # ties decide
    hits = I._launch(targets.to(DEV), pred.to(DEV), False)[1].cpu()
    assert torch.equal(hits, _ref_hits(targets, pred))
    acc, nce, grad = _run("triton", targets, pred)
    acc_t, nce_t, grad_t = _run("torch", targets, pred, device="cpu")
    assert acc == acc_t and _rel(nce, nce_t) <= 1e-6 and _rel(grad, grad_t) <= 1e-5


@needs_kernel_device
def test_subnormal_probabilities_and_ties():
    """Crafted scores (targets = identity, so S_ij = pred[j, i] exactly): rows whose softmax
    puts subnormal float32 values in a column, equal after rounding (first row must win) or not,
    and columns of exact zeros; hits must equal torch's softmax-argmax rule, not argmax of S."""
    M, D = 20, 32
    s = torch.full((M, M), -150.0)
    s[:, 0] = 0.0  # every row's mass sits in column 0: lse = 0 exactly, p = exp(S)
    s[3, 1], s[7, 1] = -103.00, -102.99  # both round to 1 * 2^-149: tie, row 3 wins
    s[2, 2], s[9, 2] = -95.0, -94.9  # distinct subnormals: row 9
    s[4, 3], s[5, 3] = -103.5, -103.9  # 2^-149 vs 0: row 4
    s[6, 4], s[6, 5] = -104.5, -88.0  # column 4 underflows: row 0; column 5: row 6
    s[5, 5] = -88.0  # same value as row 6: row 5 wins
    s[8, 8] = -60.0  # a normal value on the diagonal: hit
    targets = torch.eye(M, D).unsqueeze(0)
    pred = torch.zeros(1, M, D)
    pred[0, :, :M] = s.T
    ref = torch.softmax(s, -1).argmax(0)
    assert ref[:6].tolist() == [0, 3, 9, 4, 0, 5] and ref[8] == 8
    assert (s.argmax(0)[1:6] != ref[1:6]).sum() == 2  # columns 1 and 4: the tie rule decides
    hits = I._launch(targets.to(DEV), pred.to(DEV), False)[1].cpu()[0]
    assert torch.equal(hits, ref == torch.arange(M))


@needs_kernel_device
def test_strided_inputs_and_no_grad_path():
    """Non-contiguous views give the same numbers; without a gradient no d pred is computed."""
    targets, pred = _inputs(2, 40, 32, torch.float32, seed=9)
    wide = torch.cat([pred, pred], -1)[..., 32:]  # pred as a strided view
    tr = targets.transpose(0, 1).contiguous().transpose(0, 1)  # batch stride < row stride
    assert not wide.is_contiguous() and not tr.is_contiguous()
    acc, nce, grad = _run("triton", targets, pred)
    acc2, nce2, grad2 = _run("triton", tr, wide)
    assert acc == acc2 and _rel(nce, nce2) <= 1e-6 and _rel(grad, grad2) <= 1e-6
    with torch.no_grad():
        acc3, nce3 = infonce(targets.to(DEV), pred.to(DEV), backend="triton")
    assert acc3.item() == acc and torch.allclose(nce3.double().cpu(), nce, rtol=1e-6)
    assert I._launch(targets.to(DEV), pred.to(DEV), False)[2].numel() == 0


@needs_kernel_device
def test_grad_scaling_and_custom_op():
    """The backward scales the stored d nce / d pred by the incoming gradient; opcheck passes."""
    targets, pred = (x.to(DEV) for x in _inputs(2, 17, 32, torch.float32, seed=3))
    grads = []
    for backend in ("triton", "torch"):
        p = pred.clone().requires_grad_()
        acc, nce = infonce(targets, p, backend=backend)
        (-2.5 * nce + acc).backward()
        grads.append(p.grad)
    assert _rel(grads[0].double(), grads[1].double()) <= 1e-5
    torch.library.opcheck(torch.ops.ssast_fast.infonce_fwd.default, (targets, pred, True))
    torch.library.opcheck(torch.ops.ssast_fast.infonce_fwd.default, (targets, pred, False))


@needs_kernel_device
def test_torch_compile_fullgraph():
    """fullgraph=True: no graph break; aot_eager traces forward and backward through the fake
    kernel and runs the real one."""
    torch._dynamo.reset()
    targets, pred = (x.to(DEV) for x in _inputs(2, 21, 32, torch.float32, seed=4))

    def head(t, p):
        acc, nce = infonce(t, p * 1.5, backend="triton")
        return acc, nce * 2.0

    def run(fn):
        p = pred.clone().requires_grad_()
        acc, nce = fn(targets, p)
        nce.backward()
        return [acc, nce.detach(), p.grad]

    compiled = torch.compile(head, fullgraph=True, backend="aot_eager")
    for a, b in zip(run(compiled), run(head)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------------
# Golden parity through the model
# ---------------------------------------------------------------------------------------------


@needs_kernel_device
def test_golden_pt_patch_t256_mpc():
    """The golden mpc case with its stored masks: targets (input patches at the masks) and pred
    (cpredlayer output, captured by a hook) from the model's public forward; the op reproduces
    nce (rel-L2 <= 1e-5), acc (<= 1 flip of B*M), torch's d pred, and the stored parameter /
    input gradients (rel-L2 / L2 within 3e-5) when its nce is back-propagated through the model."""
    import numpy as np
    from safetensors.numpy import load_file

    from golden import golden_root, model_manifest, npz, rel_l2, state_dict
    from ssast_fast import ASTModel

    case = model_manifest()["cases"]["pt_patch_t256"]
    meta = case["tasks"]["mpc"]
    ctor = case["spec"]["ctor"]
    z = npz("pt_patch_t256")
    model = ASTModel(**ctor, attn_backend="sdpa")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                           state_dict("pt_patch_t256").items()}, strict=True)
    x = torch.from_numpy(z["x"]).requires_grad_(True)
    mask_index = torch.from_numpy(z[meta["masks"]["key"]])
    B, M = mask_index.shape

    box = {}
    model.cpredlayer.register_forward_hook(lambda mod, inp, out: box.__setitem__("pred", out))
    acc_model, nce_model = model(x, "pretrain_mpc", mask_index=mask_index)
    pred = box["pred"]  # [B, M, D], in the graph of the encoder
    img = x.detach().unsqueeze(1).transpose(2, 3)  # [B, 1, F, T]
    patches = torch.nn.functional.unfold(img, (ctor["fshape"], ctor["tshape"]),
                                         stride=(ctor["fstride"], ctor["tstride"])).transpose(1, 2)
    targets = torch.gather(patches, 1, mask_index[..., None].expand(-1, -1, patches.shape[-1]))
    ref = infonce(targets, pred, backend="torch")
    # The same targets / pred as the model's own loss:
    assert ref[0] == acc_model and torch.allclose(ref[1], nce_model, rtol=1e-6, atol=0)

    acc, nce = infonce(targets.to(DEV), pred.to(DEV), backend="triton")
    assert rel_l2(nce.item(), z["mpc.nce"]) <= 1e-5
    assert abs(round(acc.item() * B * M) - round(float(z["mpc.acc"]) * B * M)) <= 1
    leaf = pred.detach().requires_grad_()
    nce_leaf = infonce(targets.to(DEV), leaf.to(DEV), backend="triton")[1]
    g_tri = torch.autograd.grad(nce_leaf, leaf)[0]
    g_ref = torch.autograd.grad(infonce(targets, leaf, backend="torch")[1], leaf)[0]
    assert rel_l2(g_tri, g_ref) <= 1e-5

    nce.cpu().backward()
    stored = load_file(golden_root() / "model" / meta["grads"]["file"])
    stats = meta["grads"]["stats"]
    zero = set(meta["grads"].get("analytically_zero", {}).get("keys", []))
    worst = 0.0
    assert "cpredlayer.2.bias" in zero  # sum_j d nce / d P_j = 0: softmax rows sum to 1
    for k, p in model.named_parameters():
        if k in stats["none_grad_keys"]:
            assert p.grad is None or not p.grad.any(), k
        elif k in zero:
            assert p.grad.norm().item() <= 1e-5, k
        elif k in stored:
            assert rel_l2(p.grad, stored[k]) <= 3e-5, (k, rel_l2(p.grad, stored[k]))
            worst = max(worst, rel_l2(p.grad, stored[k]))
    l2 = meta["input_grad"]["l2"]
    assert abs(x.grad.double().norm().item() - l2) <= 3e-5 * l2
    assert {"cpredlayer.0.weight", "v.blocks.0.attn.qkv.weight"} <= set(stored)
    print(f"golden pt_patch_t256 mpc: nce rel {rel_l2(nce.item(), z['mpc.nce']):.1e}, acc "
          f"{acc.item():.4f} vs {float(z['mpc.acc']):.4f}, d pred rel {rel_l2(g_tri, g_ref):.1e}, "
          f"worst stored grad rel {worst:.1e}, input grad l2 rel "
          f"{abs(x.grad.double().norm().item() - l2) / l2:.1e}")


# ---------------------------------------------------------------------------------------------
# Reference, dispatch and validation
# ---------------------------------------------------------------------------------------------


def test_reference_accuracy_matches_model_column_hits():
    """The op's accuracy and the model's visualisation rule (heads.column_hits) agree."""
    from ssast_fast.model import heads

    targets, pred = _inputs(2, 30, 32, torch.float32, seed=1, scale=10.0)
    acc, _ = I.infonce_torch(targets, pred)
    assert acc.item() == heads.column_hits(targets, pred).float().mean().item()


def test_reference_loss_stays_float32_under_autocast():
    targets, pred = _inputs(2, 30, 32, torch.float32, seed=3)
    want = I.infonce_torch(targets, pred)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = I.infonce_torch(targets, pred)
    assert got[1].dtype == torch.float32 and torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])


def test_reference_vs_float64_and_auto_backend():
    targets, pred = _inputs(2, 40, 32, torch.float32, seed=2)
    acc, nce, grad = _run("auto", targets, pred, device="cpu")  # CPU tensors: torch backend
    _, nce64, grad64 = _run("torch", targets, pred, device="cpu", compute_dtype=torch.float64)
    assert I.resolve_backend(pred) == "torch"
    assert _rel(nce, nce64) <= 1e-6 and _rel(grad, grad64) <= 1e-6 and 0 <= acc <= 1


@pytest.mark.parametrize("case, exc, match", [
    ("rank", ValueError, r"\[B, M, D\]"),
    ("shape", ValueError, "one non-empty shape"),
    ("empty", ValueError, "one non-empty shape"),
    ("dtype", ValueError, "share dtype"),
    ("int", ValueError, "floating"),
    ("not_tensor", TypeError, "torch.Tensor"),
    ("backend", ValueError, "unknown backend"),
    ("float64", TypeError, "float64"),
    ("targets_grad", ValueError, "targets get no gradient"),
])
def test_validation_errors(case, exc, match):
    t = torch.randn(1, 4, 16)
    args, kw = [t, t.clone()], {"backend": "triton"}
    if case == "rank":
        args = [t[0], t[0]]
    elif case == "shape":
        args[1] = torch.randn(1, 5, 16)
    elif case == "empty":
        args = [torch.randn(1, 0, 16)] * 2
    elif case == "dtype":
        args[1] = t.half()
    elif case == "int":
        args = [torch.ones(1, 4, 16, dtype=torch.int32)] * 2
    elif case == "not_tensor":
        args[0] = t.numpy()
    elif case == "backend":
        kw = {"backend": "cuda"}
    elif case == "float64":
        args = [t.double(), t.double()]
    elif case == "targets_grad":
        args[0] = t.clone().requires_grad_()
    if case in ("float64", "targets_grad") and not I.HAS_TRITON:
        pytest.fail("triton is a dependency of the test suite (requirements.txt)")
    with pytest.raises(exc, match=match):
        infonce(*args, **kw)


@needs_triton
def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(I, "TRITON_INTERPRET", False)
    t = torch.randn(1, 4, 16)
    with pytest.raises(ValueError, match="CUDA tensors"):
        infonce(t, t, backend="triton")


def test_import_and_torch_backend_without_triton():
    check_without_triton(
        "from ssast_fast.ops.infonce import infonce, HAS_TRITON\n"
        "t = torch.randn(2, 6, 16)\n"
        "assert not HAS_TRITON and infonce(t, t)[1] > 0",
        "infonce(t, t, backend='triton')")


# ---------------------------------------------------------------------------------------------
# Launch geometry, autotune keys, supports(); the GPU suite's infonce sections run on CPU
# ---------------------------------------------------------------------------------------------


@needs_kernel_device
@pytest.mark.parametrize("D", [1, 20, 100, 250])
def test_feature_counts_not_multiple_of_16(D):
    """Inputs are zero-padded to a multiple of 16 features (aligned rows): same numbers."""
    targets, pred = _inputs(2, 23, D, torch.float32, seed=D)
    acc, nce, grad = _run("triton", targets, pred)
    acc_t, nce_t, grad_t = _run("torch", targets, pred, device="cpu")
    assert grad.shape == (2, 23, D) and acc == acc_t
    assert _rel(nce, nce_t) <= 1e-6 and _rel(grad, grad_t) <= 1e-5


@needs_kernel_device
def test_launch_grid_is_one_axis(monkeypatch):
    launches = spy_launches(monkeypatch, I.TUNED)
    targets, pred = (x.to(DEV) for x in _inputs(3, 40, 48, torch.float32, seed=1))
    infonce(targets, pred.requires_grad_(), backend="triton")
    (_, rows, rargs, _), (_, cols, cargs, ckw) = launches
    assert rows == (3 * 3,) and cols == (3 * 2,)  # B * cdiv(M, BLOCK) on axis 0
    assert rargs[-4:] == (40, 48, 64, 4) and cargs[-5:-1] == (40, 48, 64, 4)  # M, D, buckets
    assert ckw["BLOCK_D"] == 64 and ckw["COMPUTE_GRAD"]


def test_autotune_key_and_supports():
    if not I.HAS_TRITON:
        assert not I.supports(torch.float32, 256)
        return
    assert I.TUNED["rows"]._tuner.keys == ["M_BUCKET", "B_BUCKET", "BLOCK_D", "DOT_PREC"]
    assert I.TUNED["cols"]._tuner.keys[-1] == "COMPUTE_GRAD"
    assert I.supports(torch.float32, 256)  # the model's D (fshape * tshape = 256), in float32
    assert [I.block_d(d) for d in (1, 16, 17, 48, 250, 256, 257)] == [16, 16, 32, 64, 256, 256,
                                                                      512]
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        top = I.max_d(dtype)
        assert top >= 256 and I.supports(dtype, top) and not I.supports(dtype, top + 1)
    assert not I.supports(torch.float64, 256) and not I.supports(torch.float32, 0)


def test_too_large_d_is_a_clear_error():
    if not I.HAS_TRITON:
        pytest.skip("triton is not installed")
    d = I.max_d(torch.float32) + 1
    t = torch.randn(1, 4, d)
    with pytest.raises(ValueError, match=f"D={d} is not supported"):
        infonce(t, t, backend="triton")


@needs_triton
def test_gpu_suite_infonce_sections_dry_run():
    check_gpu_suite_dry_run("infonce")

