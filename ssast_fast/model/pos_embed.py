"""Positional-embedding adaptation from a pretraining patch grid to a fine-tuning grid."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# The reference resizes the time axis to this many frequency rows, whatever the grid had.
_REFERENCE_INTERP_ROWS = 8


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output length of an unpadded convolution (the patch-grid size along one axis)."""
    return (size - kernel) // stride + 1


def adapt_pos_embed(pos_embed: torch.Tensor, cls_tokens: int, src_grid: tuple[int, int],
                    dst_grid: tuple[int, int]) -> torch.Tensor:
    """Cut or interpolate ``pos_embed`` [1, cls + pf*pt, C] to [1, cls + f*t, C], as the reference.

    Time axis: centre crop when t < pt, else bilinear resize (align_corners=False) of the grid
    to (8, t) (the reference hard-codes 8 rows). Frequency axis: centre crop when f < pf, else
    bilinear resize to (f, t). The reference's frequency crop uses a window of t rows and
    crashes unless t == f; we crop f rows from the same start (identical where it works).
    The cls/dist rows are kept.
    """
    (pf, pt), (f, t) = src_grid, dst_grid
    C = pos_embed.shape[-1]
    grid = pos_embed[:, cls_tokens:, :].detach().transpose(1, 2).reshape(1, C, pf, pt)
    if t < pt:
        start = pt // 2 - t // 2
        grid = grid[:, :, :, start:start + t]
    else:
        grid = F.interpolate(grid, size=(_REFERENCE_INTERP_ROWS, t), mode="bilinear", align_corners=False)
    if f < pf:
        start = pf // 2 - f // 2
        if start + f > grid.shape[2]:  # pf > 8 after the 8-row resize: centre on the rows present
            start = grid.shape[2] // 2 - f // 2
        grid = grid[:, :, start:start + f, :]
    else:
        grid = F.interpolate(grid, size=(f, t), mode="bilinear", align_corners=False)
    patches = grid.reshape(1, C, f * t).transpose(1, 2)
    return torch.cat([pos_embed[:, :cls_tokens, :].detach(), patches], dim=1)
