"""ASTModel parity with the reference's golden fixtures (tests/golden.py finds them: the full
set, or the subset in tests/golden_subset).

Tolerances from the fixtures' README: outputs and encoder outputs rel-L2 <= 1e-5, gradients
rel-L2 <= 3e-5 (gradients known by statistics only: L2 norm within 3e-5 relative, max |g| within
3e-5 * L2, sum within 3e-5 * L2 * sqrt(size)), masks and RNG state exact, acc exact up to one
argmax tie flip.
"""
import hashlib
import random

import numpy as np
import pytest
import torch

from golden import grads as stored_grads
from golden import head_recipe, model_manifest, npz, rel_l2, state_dict
from ssast_fast import ASTModel
from ssast_fast.masking import batch_masks

OUT_TOL, GRAD_TOL, ZERO_GRAD_ABS = 1e-5, 3e-5, 1e-5
MAN = model_manifest()
PT_CASES = [c for c, v in MAN["cases"].items() if v["stage"] == "pretrain"]
FT_CASES = [c for c, v in MAN["cases"].items() if v["stage"] == "finetune"]
TASK_NAMES = {"mpc": "pretrain_mpc", "mpg": "pretrain_mpg"}


def tensors(sd):
    return {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}


def pretrain_model(case_id, attn_backend, heads_backend="auto"):
    ctor = MAN["cases"][case_id]["spec"]["ctor"]
    model = ASTModel(**ctor, attn_backend=attn_backend, heads_backend=heads_backend)
    model.load_state_dict(tensors(state_dict(case_id)), strict=True)
    return model


def finetune_model(case_id, attn_backend, tmp_path):
    """Fine-tune model built from a reference-format (DataParallel) checkpoint file."""
    spec = MAN["cases"][case_id]["spec"]
    ckpt = tmp_path / "pretrained.pth"
    torch.save({"module." + k: v for k, v in tensors(state_dict(spec["source"])).items()}, ckpt)
    ctor = dict(spec["ctor"], load_pretrained_mdl_path=str(ckpt))
    model = ASTModel(**ctor, attn_backend=attn_backend)
    with torch.no_grad():
        for k, v in head_recipe(case_id).items():
            model.get_parameter(k).copy_(torch.from_numpy(v))
    return model


def capture_encoder(model):
    box = {}
    model.v.norm.register_forward_hook(lambda mod, inp, out: box.__setitem__("out", out.detach()))
    return box


def check_grads(model, case_id, task, task_meta, x_grad, z):
    g = task_meta["grads"]
    grads = {k: p.grad for k, p in model.named_parameters()}
    zero_keys = set(g.get("analytically_zero", {}).get("keys", []))
    for k in g["stats"]["none_grad_keys"]:
        assert grads[k] is None or not grads[k].any(), f"{k} should get no gradient"
    stored = stored_grads(case_id, task)
    stats = g["stats"]
    for k, l2, total, max_abs in zip(stats["keys"], stats["l2"], stats["sum"], stats["max_abs"]):
        got = grads[k]
        assert got is not None, f"{k} got no gradient"
        if k in zero_keys:
            assert got.norm().item() <= ZERO_GRAD_ABS, k
        elif k in stored:
            assert rel_l2(got, stored[k]) <= GRAD_TOL, (k, rel_l2(got, stored[k]))
        else:
            got = got.double()
            assert abs(got.norm().item() - l2) <= GRAD_TOL * l2, k
            assert abs(got.abs().max().item() - max_abs) <= GRAD_TOL * l2, k
            assert abs(got.sum().item() - total) <= GRAD_TOL * l2 * got.numel() ** 0.5, k
    ig = task_meta["input_grad"]
    if ig["key"]:
        assert rel_l2(x_grad, z[ig["key"]]) <= GRAD_TOL
    else:
        assert abs(x_grad.double().norm().item() - ig["l2"]) <= GRAD_TOL * ig["l2"]


def check_encoder(enc, meta, z):
    if meta["key"]:
        assert rel_l2(enc, z[meta["key"]]) <= OUT_TOL
    else:
        assert abs(enc.double().norm().item() - meta["l2"]) <= OUT_TOL * meta["l2"]


@pytest.mark.parametrize("attn_backend", ["eager", "sdpa"])
@pytest.mark.parametrize("task", ["mpc", "mpg"])
@pytest.mark.parametrize("case_id", PT_CASES)
def test_pretrain_golden(case_id, task, attn_backend, ext_path, heads_backend="auto"):
    case, z = MAN["cases"][case_id], npz(case_id)
    meta = case["tasks"][task]
    call = meta["forward_call"]
    model = pretrain_model(case_id, attn_backend, heads_backend)
    enc = capture_encoder(model)
    x = torch.from_numpy(z["x"]).requires_grad_(True)

    random.seed(meta["python_random_seed"])
    out = model(x, call["task"], cluster=call["cluster"], mask_patch=call["mask_patch"])
    state = hashlib.sha256(repr(random.getstate()).encode()).hexdigest()
    assert state == meta["python_random_state_sha256_after_forward"]

    if task == "mpc":
        acc, loss = out
        B, M = z[meta["masks"]["key"]].shape
        assert abs(round(acc.item() * B * M) - round(float(z["mpc.acc"]) * B * M)) <= 1
        assert rel_l2(loss.item(), z["mpc.nce"]) <= OUT_TOL
    else:
        loss = out
        assert rel_l2(loss.item(), z["mpg.mse"]) <= OUT_TOL
    check_encoder(enc["out"], meta["encoder_out"], z)
    loss.backward()
    check_grads(model, case_id, task, meta, x.grad, z)


@pytest.mark.parametrize("task", ["mpc", "mpg"])
@pytest.mark.parametrize("case_id", PT_CASES)
def test_masks_golden(case_id, task, ext_path):
    case, z = MAN["cases"][case_id], npz(case_id)
    meta = case["tasks"][task]
    expected = z[meta["masks"]["key"]]
    calls = meta["masks"]["calls"]
    random.seed(meta["python_random_seed"])
    got = batch_masks(len(calls), case["derived"]["num_patches"], meta["forward_call"]["mask_patch"],
                      case["derived"]["p_t_dim"], meta["forward_call"]["cluster"])
    np.testing.assert_array_equal(got.numpy(), expected)
    assert hashlib.sha256(repr(random.getstate()).encode()).hexdigest() == meta["python_random_state_sha256_after_forward"]


@pytest.mark.parametrize("task", ["mpc", "mpg"])
@pytest.mark.parametrize("case_id", PT_CASES)
def test_pretrain_explicit_mask_index(case_id, task):
    """Feeding the recorded masks reproduces the outputs without touching Python's RNG."""
    case, z = MAN["cases"][case_id], npz(case_id)
    meta = case["tasks"][task]
    call = meta["forward_call"]
    model = pretrain_model(case_id, "sdpa")
    before = random.getstate()
    out = model(torch.from_numpy(z["x"]), call["task"], cluster=call["cluster"],
                mask_index=torch.from_numpy(z[meta["masks"]["key"]]))
    assert random.getstate() == before
    loss = out[1] if task == "mpc" else out
    assert rel_l2(loss.item(), z["mpc.nce" if task == "mpc" else "mpg.mse"]) <= OUT_TOL


@pytest.mark.parametrize("case_id", FT_CASES)
def test_finetune_construction_matches_reference(case_id, tmp_path):
    model = finetune_model(case_id, "sdpa", tmp_path)
    want = state_dict(case_id)
    got = model.state_dict()
    assert list(got) == list(want)
    for k, v in want.items():
        assert tuple(got[k].shape) == v.shape, k
        np.testing.assert_array_equal(got[k].numpy(), v, err_msg=k)  # bit-exact incl. pos_embed


@pytest.mark.parametrize("attn_backend", ["eager", "sdpa"])
@pytest.mark.parametrize("task", ["ft_avgtok", "ft_cls"])
@pytest.mark.parametrize("case_id", FT_CASES)
def test_finetune_golden(case_id, task, attn_backend, tmp_path):
    case, z = MAN["cases"][case_id], npz(case_id)
    meta = case["tasks"][task]
    model = finetune_model(case_id, attn_backend, tmp_path)
    enc = capture_encoder(model)
    x = torch.from_numpy(z["x"]).requires_grad_(True)
    logits = model(x, task)
    assert rel_l2(logits.detach(), z[f"{task}.logits"]) <= OUT_TOL
    check_encoder(enc["out"], meta["encoder_out"], z)
    logits.sum().backward()
    check_grads(model, case_id, task, meta, x.grad, z)


def test_pretrain_golden_triton_kernels():
    """Triton attention and InfoNCE (interpreter on CPU) through the model: the smallest case."""
    test_pretrain_golden("pt_patch_f64_t128", "mpc", "triton", "ext", heads_backend="triton")


def test_pretrain_golden_triton_heads_full_gradients():
    test_pretrain_golden("pt_patch_t256", "mpc", "sdpa", "ext", heads_backend="triton")


def test_finetune_golden_triton_attention(tmp_path):
    test_finetune_golden("ft_patch_f64_interp_t256", "ft_avgtok", "triton", tmp_path)
