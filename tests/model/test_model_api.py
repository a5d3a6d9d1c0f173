"""ASTModel API: construction for every size, checkpoint interop, tasks, and bad input."""
import random

import numpy as np
import pytest
import torch

from golden import model_manifest, state_dict
from ssast_fast import ASTModel
from ssast_fast.checkpoint import load_reference, save_reference

PT = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=256, model_size="tiny")


def tiny_pretrained():
    model = ASTModel(**PT)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict("pt_patch_t256").items()})
    return model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "pretrained.pth"
    save_reference(tiny_pretrained(), path)
    return path


@pytest.mark.parametrize("size,dim,blocks_dim", [("tiny", 192, 576), ("small", 384, 1152), ("base", 768, 2304),
                                                 ("base_nokd", 768, 2304)])
def test_state_dict_keys_per_size(size, dim, blocks_dim):
    ref_keys = model_manifest()["cases"]["pt_patch_t256"]["weights"]["keys"]
    model = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_tdim=64, model_size=size)
    keys = list(model.state_dict())
    if size == "base_nokd":  # no distillation token, no distillation head
        ref_keys = [k for k in ref_keys if k not in ("v.dist_token", "v.head_dist.weight", "v.head_dist.bias")]
    assert keys == ref_keys
    sd = model.state_dict()
    assert sd["v.blocks.0.attn.qkv.weight"].shape == (blocks_dim, dim)
    assert sd["v.pos_embed"].shape == (1, 8 * 4 + (1 if size == "base_nokd" else 2), dim)
    assert sd["p_input_tdim"].item() == 64 and sd["p_input_tdim"].dtype == torch.int64


def test_base_nokd_pretraining_runs():
    """The reference crashes here (it always adds a distillation token); we use the one cls token."""
    model = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_tdim=64, model_size="base_nokd")
    random.seed(0)
    acc, nce, mse = model.pretrain_joint(torch.randn(2, 64, 128), mask_patch=10)
    assert torch.isfinite(nce) and torch.isfinite(mse) and 0 <= acc.item() <= 1


def test_save_reference_roundtrip(ckpt):
    raw = torch.load(ckpt, weights_only=True)
    assert all(k.startswith("module.") for k in raw)
    sd = load_reference(ckpt)
    for k, v in state_dict("pt_patch_t256").items():
        np.testing.assert_array_equal(sd[k].numpy(), v)


@pytest.mark.parametrize("form", ["dataparallel_file", "plain_file", "mapping", "wrapped_mapping"])
def test_finetune_sources_agree(form, ckpt, tmp_path):
    sd = load_reference(ckpt)
    if form == "dataparallel_file":
        src = str(ckpt)
    elif form == "plain_file":
        src = tmp_path / "plain.pth"
        torch.save(sd, src)
    elif form == "mapping":
        src = sd
    else:
        src = {"model": {"module." + k: v for k, v in sd.items()}}
    model = ASTModel(label_dim=5, fshape=16, tshape=16, fstride=10, tstride=10, input_tdim=128,
                     model_size="tiny", pretrain_stage=False, load_pretrained_mdl_path=src)
    want = state_dict("ft_patch_overlap_t128")["v.pos_embed"]
    np.testing.assert_array_equal(model.state_dict()["v.pos_embed"].numpy(), want)
    assert model(torch.randn(2, 128, 128), "ft_avgtok").shape == (2, 5)


def test_finetune_model_saves_loadable_reference_checkpoint(ckpt, tmp_path):
    model = ASTModel(label_dim=5, fshape=16, tshape=16, fstride=16, tstride=16, input_tdim=256,
                     model_size="tiny", pretrain_stage=False, load_pretrained_mdl_path=ckpt)
    out = tmp_path / "ft.pth"
    save_reference(model, out)
    again = ASTModel(label_dim=5, fshape=16, tshape=16, fstride=16, tstride=16, input_tdim=256,
                     model_size="tiny", pretrain_stage=False, load_pretrained_mdl_path=ckpt)
    again.load_state_dict(load_reference(out))
    x = torch.randn(1, 256, 128)
    torch.testing.assert_close(again(x, "ft_cls"), model(x, "ft_cls"), rtol=0, atol=0)


@pytest.mark.parametrize("tdim", [96, 300])
def test_finetune_frequency_grid_shrinks(ckpt, tdim):
    """128-bin pretraining -> 64-bin fine-tuning: the reference crashes unless t_dim == f_dim."""
    model = ASTModel(label_dim=3, fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=64, input_tdim=tdim,
                     model_size="tiny", pretrain_stage=False, load_pretrained_mdl_path=ckpt)
    t_dim = tdim // 16
    pos = model.v.pos_embed.detach()
    assert pos.shape == (1, 2 + 4 * t_dim, 192)
    src = torch.from_numpy(state_dict("pt_patch_t256")["v.pos_embed"])
    grid = src[:, 2:].transpose(1, 2).reshape(1, 192, 8, 16)
    if t_dim < 16:
        grid = grid[..., 8 - t_dim // 2: 8 - t_dim // 2 + t_dim]
    else:
        grid = torch.nn.functional.interpolate(grid, size=(8, t_dim), mode="bilinear", align_corners=False)
    want = grid[:, :, 2:6].reshape(1, 192, -1).transpose(1, 2)  # centre rows 2..5 of 8
    torch.testing.assert_close(pos[:, 2:], want, rtol=0, atol=0)
    assert model(torch.randn(1, tdim, 64), "ft_avgtok").shape == (1, 3)


def test_pretrain_joint_is_mpc_then_mpg():
    model = tiny_pretrained()
    x = torch.randn(2, 256, 128)
    random.seed(11)
    acc, nce, mse = model.pretrain_joint(x, mask_patch=40)
    random.seed(11)
    acc2, nce2 = model(x, "pretrain_mpc", mask_patch=40)
    mse2 = model(x, "pretrain_mpg", mask_patch=40)
    assert (acc, nce, mse) == (acc2, nce2, mse2)


def test_visualize_mask():
    model = tiny_pretrained()
    x = torch.randn(1, 256, 128)
    random.seed(4)
    pred, masked = model(x, "visualize_mask", mask_patch=20)
    assert pred.shape == masked.shape == (1, 1, 128, 256)
    assert int((masked == 99).sum()) == 20 * 256
    assert set(pred[masked == 99].unique().tolist()) <= {0.0, 99.0}
    random.seed(4)
    acc, _ = model(x, "pretrain_mpc", mask_patch=20)
    assert int((pred == 99).sum()) == round(acc.item() * 20) * 256


@pytest.mark.parametrize("task,pool", [("ft_avgtok", "avgtok"), ("ft_cls", "cls")])
def test_forward_features_and_head_are_the_task(ckpt, task, pool):
    ft = ASTModel(label_dim=3, fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=256,
                  model_size="tiny", pretrain_stage=False, load_pretrained_mdl_path=str(ckpt)).eval()
    x = torch.randn(2, 256, 128)
    with torch.no_grad():
        h = ft.forward_features(x)
        assert h.shape == (2, ft.cls_token_num + ft.num_patches, 192)
        torch.testing.assert_close(ft.forward_head(h, pool), ft(x, task), rtol=0, atol=0)
        pooled = ft.forward_head(h, pool, pre_logits=True)
    want = h[:, 2:].mean(1) if pool == "avgtok" else h[:, :2].mean(1)
    torch.testing.assert_close(pooled, want)
    with pytest.raises(ValueError, match="unknown pool"):
        ft.pool(h, "max")
    pre = tiny_pretrained()
    with pytest.raises(ValueError, match="no mlp_head"):
        pre.forward_head(pre.forward_features(x))


@pytest.mark.parametrize("fdim,fshape,cluster,largest", [(128, 16, True, 126), (128, 128, False, 16)])
def test_mask_rules(fdim, fshape, cluster, largest):
    model = ASTModel(fshape=fshape, tshape=16, fstride=fshape, tstride=16, input_fdim=fdim, input_tdim=256,
                     model_size="tiny")
    assert model.cluster is cluster
    assert model.max_mask_patch() == largest
    assert model.max_mask_patch(cluster=False) == model.num_patches
    random.seed(0)
    model(torch.randn(1, 256, fdim), "pretrain_mpg", cluster=model.cluster, mask_patch=largest)
    with pytest.raises(ValueError, match="mask_patch must be in"):
        model(torch.randn(1, 256, fdim), "pretrain_mpg", cluster=model.cluster, mask_patch=largest + 1)


# ---- bad input ------------------------------------------------------------------------------
def test_bad_forward_inputs():
    model = tiny_pretrained()
    x = torch.randn(2, 256, 128)
    with pytest.raises(ValueError, match="batch, time_frames, freq_bins"):
        model(x[0], "pretrain_mpc")
    with pytest.raises(ValueError, match="input_tdim=256"):
        model(torch.randn(2, 200, 128), "pretrain_mpc", mask_patch=10)
    with pytest.raises(ValueError, match="input_fdim=128"):
        model(torch.randn(2, 256, 64), "pretrain_mpc", mask_patch=10)
    with pytest.raises(TypeError, match="floating-point"):
        model(x.long(), "pretrain_mpc")
    with pytest.raises(TypeError, match="torch.Tensor"):
        model(x.numpy(), "pretrain_mpc")
    with pytest.raises(ValueError, match="unknown task"):
        model(x, "pretrain_xyz")
    with pytest.raises(ValueError, match="fine-tuning model"):
        model(x, "ft_avgtok")
    with pytest.raises(ValueError, match="batch of one"):
        model(x, "visualize_mask", mask_patch=10)


@pytest.mark.parametrize("mask_patch,cluster", [(0, True), (-3, True), (127, True), (129, False), (400, True)])
def test_bad_mask_patch(mask_patch, cluster):
    model = tiny_pretrained()
    with pytest.raises(ValueError, match="mask_patch must be in"):
        model(torch.randn(1, 256, 128), "pretrain_mpg", cluster=cluster, mask_patch=mask_patch)


def test_bad_mask_index():
    model = tiny_pretrained()
    x = torch.randn(2, 256, 128)
    with pytest.raises(ValueError, match="shape"):
        model(x, "pretrain_mpc", mask_index=torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 128\)"):
        model(x, "pretrain_mpc", mask_index=torch.full((2, 5), 128))
    with pytest.raises(ValueError, match="repeat"):
        model(x, "pretrain_mpc", mask_index=torch.tensor([[1, 2, 2], [3, 4, 5]]))
    with pytest.raises(TypeError, match="int64"):
        model(x, "pretrain_mpc", mask_index=torch.zeros(2, 5))


def test_bad_constructor_args():
    with pytest.raises(ValueError, match="model_size"):
        ASTModel(model_size="huge")
    with pytest.raises(ValueError, match="stride == patch shape"):
        ASTModel(fshape=16, tshape=16, fstride=10, tstride=10, model_size="tiny")
    with pytest.raises(ValueError, match="must be None"):
        ASTModel(model_size="tiny", load_pretrained_mdl_path="x.pth")
    with pytest.raises(ValueError, match="needs load_pretrained_mdl_path"):
        ASTModel(model_size="tiny", pretrain_stage=False)
    with pytest.raises(ValueError, match="larger than the input"):
        ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_tdim=8, model_size="tiny")
    with pytest.raises(ValueError, match="attn_backend"):
        ASTModel(model_size="tiny", attn_backend="flash9")
    with pytest.raises(TypeError, match="fshape"):
        ASTModel(fshape=16.0, model_size="tiny")


def ft(src, **kw):
    args = dict(label_dim=3, fshape=16, tshape=16, fstride=16, tstride=16, input_tdim=128, model_size="tiny",
                pretrain_stage=False, load_pretrained_mdl_path=src)
    args.update(kw)
    return ASTModel(**args)


def test_bad_checkpoints(ckpt, tmp_path):
    with pytest.raises(ValueError, match="not found"):
        ft(tmp_path / "nope.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        ft(corrupt)
    notsd = tmp_path / "list.pth"
    torch.save([1, 2, 3], notsd)
    with pytest.raises(ValueError, match="not a state dict"):
        ft(notsd)
    sd = load_reference(ckpt)
    with pytest.raises(ValueError, match="missing"):
        ft({k: v for k, v in sd.items() if not k.startswith("p_input")})
    with pytest.raises(ValueError, match="does not match model_size"):
        ft(ckpt, model_size="small")
    with pytest.raises(ValueError, match="patch shape differs"):
        ft(ckpt, fshape=8, tshape=32, fstride=8, tstride=32)
    broken = dict(sd)
    broken["v.blocks.3.mlp.fc1.weight"] = torch.zeros(10, 10)
    with pytest.raises(ValueError, match="v.blocks.3.mlp.fc1.weight"):
        ft(broken)
    del broken["v.blocks.3.mlp.fc1.weight"]
    with pytest.raises(ValueError, match="missing blocks.3.mlp.fc1.weight"):
        ft(broken)
    with pytest.raises(TypeError, match="path or a state-dict"):
        ft(12)
