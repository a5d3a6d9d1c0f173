"""Batched pretraining heads: masked-token replacement, gathers, the accuracy rule and MSE.

Readable torch versions of the reference's per-sample loops, computed for the whole batch at
once; the InfoNCE loss itself is the op ``ssast_fast.ops.infonce`` (torch or fused Triton).
Shapes: B samples, P patches, M masked patches per sample, D = fshape * tshape values
per patch (256 for 16x16), C embedding channels.
"""
from __future__ import annotations

import torch


def replace_masked(patches: torch.Tensor, mask_index: torch.Tensor, mask_embed: torch.Tensor) -> torch.Tensor:
    """Replace patch embeddings at masked positions by ``mask_embed``.

    patches [B, P, C], mask_index int64 [B, M], mask_embed [1, 1, C] -> [B, P, C]. Equal, value
    for value, to the reference's ``x * mask_dense + (1 - mask_dense) * mask_tokens``.
    """
    masked = torch.zeros(patches.shape[:2], dtype=torch.bool, device=patches.device)
    masked.scatter_(1, mask_index, True)
    return torch.where(masked.unsqueeze(-1), mask_embed.to(patches.dtype), patches)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, N, C], index int64 [B, M] -> x[b, index[b]] as [B, M, C]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def column_hits(targets: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """bool [B, M]: whether masked patch j wins its column (the mpc accuracy rule).

    S_b = targets_b @ pred_b^T; hit j when argmax_i softmax(S_b, dim=-1)[i, j] == j. The
    softmax normalises rows and the argmax runs down columns, as the reference does; where the
    softmax underflows to 0 the argmax ties and takes the first row, which this reproduces.
    """
    with torch.autocast(targets.device.type, enabled=False):
        scores = torch.bmm(targets.float(), pred.float().transpose(1, 2))
    return torch.softmax(scores, dim=-1).argmax(dim=1) == torch.arange(scores.shape[-1], device=scores.device)


def masked_mse(pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean((pred - targets)^2) over all B * M * D elements, in float32."""
    return torch.mean((pred.float() - targets.float()) ** 2)
