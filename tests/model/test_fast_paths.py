"""mask_mode="fast", shared_mask, the [2B] encoder call of the two-pass joint step, and
torch.compile of the pretraining step."""
import random

import pytest
import torch

from golden import model_manifest, rel_l2
from model.test_golden_model import npz, pretrain_model
from ssast_fast import ASTModel
from ssast_fast.masking import sample_masks


def fast_model(case_id):
    model = pretrain_model(case_id, "sdpa")
    model.mask_mode = "fast"
    return model


def test_fast_mode_same_losses_given_the_same_mask_index():
    z = npz("pt_patch_t256")
    model = fast_model("pt_patch_t256")
    acc, nce = model(torch.from_numpy(z["x"]), "pretrain_mpc", mask_index=torch.from_numpy(z["mpc.mask_index"]))
    assert rel_l2(nce.item(), z["mpc.nce"]) <= 1e-5
    mse = model(torch.from_numpy(z["x"]), "pretrain_mpg", mask_index=torch.from_numpy(z["mpg.mask_index"]))
    assert rel_l2(mse.item(), z["mpg.mse"]) <= 1e-5


def test_fast_mode_draws_from_torch_rng_not_python_random():
    model = fast_model("pt_patch_t256")
    x = torch.from_numpy(npz("pt_patch_t256")["x"])
    before = random.getstate()
    torch.manual_seed(5)
    a = model.pretrain_joint(x, mask_patch=40)
    assert random.getstate() == before
    torch.manual_seed(5)
    b = model.pretrain_joint(x, mask_patch=40)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.isfinite(t) for t in a)


JOINT_GRAD_TOL = 1e-5  # fp32: the same math in another batch layout, so float32 rounding only
ZERO_GRAD_ABS = 1e-5  # analytically zero gradients: rounding noise (~2e-7 in the golden runs)


@pytest.mark.parametrize("case_id", [c for c, v in model_manifest()["cases"].items() if v["stage"] == "pretrain"])
def test_joint_backward_equals_two_separate_passes(case_id):
    """joint_losses runs the mpc and mpg passes as one encoder call on a [2B] batch; the backward
    of nce + 10 * mse through it gives every parameter gradient and the input gradient of the two
    separate calls (rel-L2 <= 1e-5 per tensor; an absolute bound where the manifest says the
    gradient is analytically zero)."""
    z = npz(case_id)
    case = model_manifest()["cases"][case_id]
    zero = set(case["tasks"]["mpc"]["grads"].get("analytically_zero", {}).get("keys", []))
    model = pretrain_model(case_id, "sdpa")
    mpc, mpg = (torch.from_numpy(z[f"{t}.mask_index"]) for t in ("mpc", "mpg"))

    def grads(joint: bool):
        model.zero_grad(set_to_none=True)
        x = torch.from_numpy(z["x"]).requires_grad_(True)
        if joint:
            _, nce, mse = model.joint_losses(x, mpc, mpg)
        else:
            nce = model(x, "pretrain_mpc", mask_index=mpc)[1]
            mse = model(x, "pretrain_mpg", mask_index=mpg)
        (nce + 10 * mse).backward()
        return {"x": x.grad, **{n: p.grad for n, p in model.named_parameters() if p.grad is not None}}

    joint, separate = grads(True), grads(False)
    assert joint.keys() == separate.keys()
    for k, want in separate.items():
        if k in zero:
            assert joint[k].norm().item() <= ZERO_GRAD_ABS and want.norm().item() <= ZERO_GRAD_ABS, k
        else:
            assert rel_l2(joint[k], want) <= JOINT_GRAD_TOL, (k, rel_l2(joint[k], want))


def test_bad_mask_mode():
    with pytest.raises(ValueError, match="mask_mode"):
        ASTModel(model_size="tiny", mask_mode="quick")


def test_shared_mask_is_one_pass_feeding_both_heads():
    z = npz("pt_patch_t256")
    model = pretrain_model("pt_patch_t256", "sdpa")
    x = torch.from_numpy(z["x"])
    random.seed(1)
    acc, nce, mse = model.pretrain_joint(x, mask_patch=40, shared_mask=True)
    # one draw with the mpc seed: the mpc half equals the golden mpc, the mpg half uses the same mask
    assert rel_l2(nce.item(), z["mpc.nce"]) <= 1e-5
    mse_same_mask = model(x, "pretrain_mpg", mask_index=torch.from_numpy(z["mpc.mask_index"]))
    assert rel_l2(mse.item(), mse_same_mask.item()) <= 1e-6
    calls = []
    model.v.norm.register_forward_hook(lambda *a: calls.append(1))
    model.pretrain_joint(x, mask_patch=40, shared_mask=True)
    assert len(calls) == 1


@pytest.mark.parametrize("shared", [False, True])
def test_compiled_joint_step_has_no_graph_breaks(shared):
    """joint_losses (masks drawn outside with the fast sampler) traces as one graph and trains."""
    torch._dynamo.reset()
    model = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_tdim=64, model_size="tiny",
                     mask_mode="fast")
    x = torch.randn(2, 64, 128)
    gen = torch.Generator().manual_seed(0)
    mpc, mpg = (sample_masks(2, model.num_patches, 10, model.t_dim, generator=gen) for _ in range(2))
    args = (x, mpc) if shared else (x, mpc, mpg)
    explanation = torch._dynamo.explain(model.joint_losses)(*args)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model.joint_losses, backend="aot_eager", fullgraph=True)
    acc, nce, mse = compiled(*args)
    (nce + 10 * mse).backward()
    want = model.joint_losses(*args)
    torch.testing.assert_close(torch.stack([acc, nce, mse]), torch.stack(want), rtol=1e-5, atol=1e-6)
