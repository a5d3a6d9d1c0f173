"""bf16 autocast against the fp32 golden values, and torch.compile of the pretraining step."""
import random

import pytest
import torch

from golden import model_manifest, rel_l2
from model.test_golden_model import finetune_model, npz, pretrain_model

BF16_TOL = 1e-2  # documented tolerance of the bf16 autocast path against fp32 golden losses


@pytest.mark.parametrize("case_id", ["pt_patch_t256", "pt_frame_t256"])
def test_bf16_autocast_pretraining_losses(case_id):
    z = npz(case_id)
    cluster = model_manifest()["cases"][case_id]["spec"]["cluster"]
    model = pretrain_model(case_id, "sdpa")
    x = torch.from_numpy(z["x"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        acc, nce = model(x, "pretrain_mpc", cluster=cluster, mask_index=torch.from_numpy(z["mpc.mask_index"]))
        mse = model(x, "pretrain_mpg", cluster=cluster, mask_index=torch.from_numpy(z["mpg.mask_index"]))
    assert nce.dtype == mse.dtype == torch.float32  # losses are computed in fp32 under autocast
    assert rel_l2(nce.item(), z["mpc.nce"]) <= BF16_TOL
    assert rel_l2(mse.item(), z["mpg.mse"]) <= BF16_TOL
    (nce + 10 * mse).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bf16_autocast_finetune_logits(tmp_path):
    z = npz("ft_patch_overlap_t128")
    model = finetune_model("ft_patch_overlap_t128", "sdpa", tmp_path)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.from_numpy(z["x"]), "ft_avgtok")
    assert rel_l2(logits.float().detach(), z["ft_avgtok.logits"]) <= BF16_TOL
