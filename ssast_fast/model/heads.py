"""Batched pretraining heads: masked-token replacement, gathers, InfoNCE (mpc) and MSE (mpg).

Readable torch versions of the reference's per-sample loops, computed for the whole batch at
once. Shapes: B samples, P patches, M masked patches per sample, D = fshape * tshape values
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


def infonce(targets: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference mpc loss and accuracy, batched.

    targets [B, M, D] (masked input patches), pred [B, M, D] (cpredlayer outputs). Per sample
    S = targets @ pred^T [M, M]; nce = -mean_b,i log_softmax(S_b, dim=-1)[i, i];
    acc = fraction of (b, j) with argmax_i softmax(S_b, dim=-1)[i, j] == j (rows normalised,
    argmax down columns, as the reference does). Computed in float32. Returns (acc, nce) 0-d.
    """
    B, M, _ = targets.shape
    scores = _scores(targets, pred)
    nce = -torch.diagonal(torch.log_softmax(scores, dim=-1), dim1=1, dim2=2).sum() / (B * M)
    with torch.no_grad():
        acc = _column_hits(scores).sum().float() / (B * M)
    return acc, nce


def _scores(targets: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    with torch.autocast(targets.device.type, enabled=False):  # the loss stays float32 under autocast
        return torch.bmm(targets.float(), pred.float().transpose(1, 2))  # [B, M, M]


def _column_hits(scores: torch.Tensor) -> torch.Tensor:
    # softmax, not log_softmax: where softmax underflows to 0 the reference's argmax ties and
    # takes the first row, which the accuracy must reproduce.
    return torch.softmax(scores, dim=-1).argmax(dim=1) == torch.arange(scores.shape[-1], device=scores.device)


def column_hits(targets: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """bool [B, M]: whether masked patch j is the column argmax of its row-softmax (see infonce)."""
    return _column_hits(_scores(targets, pred))


def masked_mse(pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean((pred - targets)^2) over all B * M * D elements, in float32."""
    return torch.mean((pred.float() - targets.float()) ** 2)
