"""A reference-equivalent SSAST pretraining step, for benchmarks only.

It runs the reference implementation's formulation on an ``ssast_fast.ASTModel``'s weights:
masks drawn per sample with the pure-Python generators, per-sample Python loops for the mask
bookkeeping, target copies, prediction heads and losses, a dense 0/1 mask multiply, and the
eager attention formulation (build the model with ``attn_backend="eager"``). The numbers equal
ssast_fast's (the golden tests prove those equal the reference's); only the speed differs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssast_fast import ASTModel, _ext
from ssast_fast.masking import gen_maskid_frame, gen_maskid_patch


def _masked_encoder_pass(model: ASTModel, x: torch.Tensor, mask_patch: int, cluster: bool):
    img = x.unsqueeze(1).transpose(2, 3)
    patches = F.unfold(img, (model.fshape, model.tshape), stride=(model.fstride, model.tstride)).transpose(1, 2)
    h = model.v.patch_embed(img)
    B = h.shape[0]
    index = torch.empty(B, mask_patch, dtype=torch.long, device=x.device)
    keep = torch.ones_like(h)
    with _ext.pure():  # the reference's generators, one Python call per sample
        for b in range(B):
            index[b] = (gen_maskid_patch(model.num_patches, mask_patch, model.t_dim) if cluster
                        else gen_maskid_frame(model.num_patches, mask_patch))
            keep[b, index[b], :] = 0
    h = h * keep + (1 - keep) * model.mask_embed.expand(B, h.shape[1], -1)
    return model.v.encode(h), patches, index


def _per_sample_heads(model: ASTModel, layer, x: torch.Tensor, mask_patch: int, cluster: bool, detach: bool):
    """Masked pass, then per sample: prediction layer on the masked outputs, target copies."""
    out, patches, index = _masked_encoder_pass(model, x, mask_patch, cluster)
    B, D = x.shape[0], model.fshape * model.tshape
    pred = torch.empty(B, mask_patch, D, device=x.device)
    targets = torch.empty(B, mask_patch, D, device=x.device)
    for b in range(B):
        pred[b] = layer(out[b, index[b] + model.cls_token_num])
        targets[b] = patches[b, index[b]].detach() if detach else patches[b, index[b]]
    return pred, targets


def reference_mpc(model: ASTModel, x: torch.Tensor, mask_patch: int, cluster: bool = True):
    pred, targets = _per_sample_heads(model, model.cpredlayer, x, mask_patch, cluster, detach=True)
    B = x.shape[0]
    nce = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    cols = torch.arange(mask_patch, device=x.device)
    for b in range(B):
        scores = targets[b] @ pred[b].t()
        correct += (torch.softmax(scores, dim=-1).argmax(dim=0) == cols).sum()
        nce += torch.log_softmax(scores, dim=-1).diagonal().sum()
    return correct / (B * mask_patch), nce / (-B * mask_patch)


def reference_mpg(model: ASTModel, x: torch.Tensor, mask_patch: int, cluster: bool = True):
    pred, targets = _per_sample_heads(model, model.gpredlayer, x, mask_patch, cluster, detach=False)
    return torch.mean((pred - targets) ** 2)


def reference_joint_step(model: ASTModel, x: torch.Tensor, mask_patch: int, cluster: bool = True) -> torch.Tensor:
    """mpc pass, mpg pass, backward of nce + 10 * mse, as the reference training loop."""
    _, nce = reference_mpc(model, x, mask_patch, cluster)
    mse = reference_mpg(model, x, mask_patch, cluster)
    loss = nce + 10 * mse
    loss.backward()
    return loss.detach()


def ours_joint_step(model: ASTModel, x: torch.Tensor, mask_patch: int, shared_mask: bool = False,
                    bf16: bool = False) -> torch.Tensor:
    """ssast_fast's step: the model's batched path, optionally under bf16 autocast."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        _, nce, mse = model.pretrain_joint(x, mask_patch=mask_patch, shared_mask=shared_mask)
    loss = nce + 10 * mse
    loss.backward()
    return loss.detach()


def train_flops_per_clip(model: ASTModel) -> float:
    """Matmul FLOPs of one clip's fwd + bwd encoder pass (3x forward), heads excluded."""
    N, C = model.num_patches + model.cls_token_num, model.original_embedding_dim
    per_block = 24 * N * C * C + 4 * N * N * C  # qkv, proj, mlp (2 x 4C) + q k^T and p v
    patch_embed = 2 * model.num_patches * C * model.fshape * model.tshape
    return 3.0 * (len(model.v.blocks) * per_block + patch_embed)
