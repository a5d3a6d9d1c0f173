"""Reference-exact mask generators (the SSAST reference's algorithms, bit for bit).

Both draw from Python's global ``random`` module exactly as the reference does and leave it in
the same state. The compiled path (``ssast_fast._C``) replays the Mersenne Twister stream and
CPython's set ordering in C++; the pure path below is the readable reference for it.
"""
from __future__ import annotations

import random

import torch

from ssast_fast import _ext

_CLUSTER_MIN = 3  # the side of a cluster is randrange(cluster) + 3


def _check_patch_args(sequence_len: int, mask_size: int, p_t_dim: int, cluster: int) -> None:
    for name, v in (("sequence_len", sequence_len), ("mask_size", mask_size), ("p_t_dim", p_t_dim), ("cluster", cluster)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"gen_maskid_patch: {name} must be an int, got {type(v).__name__}")
    if sequence_len < 2:
        raise ValueError(f"gen_maskid_patch: sequence_len must be >= 2, got {sequence_len}")
    if not 1 <= mask_size <= sequence_len - 2:
        # patch 0 is never masked and the reference loops until it holds MORE than mask_size
        # distinct indices, so mask_size >= sequence_len - 1 would never terminate there.
        raise ValueError(
            f"gen_maskid_patch: mask_size must be in [1, sequence_len - 2] = [1, {sequence_len - 2}], "
            f"got {mask_size} (the reference loops forever for mask_size >= sequence_len - 1)"
        )
    if p_t_dim < 1:
        raise ValueError(f"gen_maskid_patch: p_t_dim must be >= 1, got {p_t_dim}")
    if cluster < 1:
        raise ValueError(f"gen_maskid_patch: cluster must be >= 1, got {cluster}")
    if sequence_len >= 2**31:
        raise ValueError(f"gen_maskid_patch: sequence_len must be < 2**31, got {sequence_len}")


def _patch_python(sequence_len: int, mask_size: int, p_t_dim: int, cluster: int) -> list[int]:
    side = random.randrange(cluster) + _CLUSTER_MIN
    collected: list[int] = []
    distinct: set[int] = set()
    while len(distinct) <= mask_size:
        start = random.randrange(sequence_len)
        for i in range(side):
            for j in range(side):
                cand = start + p_t_dim * i + j  # not clipped at the row end: wraps to the next row
                if 0 < cand < sequence_len:
                    collected.append(cand)
                    distinct.add(cand)
    # The reference keeps the first mask_size elements of set(list) in CPython's iteration
    # order; that order depends on insertion order (with duplicates), so rebuild it the same way.
    return list(set(collected))[:mask_size]


def gen_maskid_patch(sequence_len: int, mask_size: int, p_t_dim: int, cluster: int = 3) -> torch.Tensor:
    """Cluster mask of one sample, as the reference ``ASTModel.gen_maskid_patch``.

    Args:
        sequence_len: number of patches n (patch index = f * p_t_dim + t).
        mask_size: number of masked patches M, 1 <= M <= n - 2.
        p_t_dim: patches along time (row length of the patch grid).
        cluster: squares have side ``randrange(cluster) + 3`` (the model always passes 3).
    Returns:
        int64 tensor [M] of distinct indices in (0, n), drawn from Python's global ``random``.
    """
    _check_patch_args(sequence_len, mask_size, p_t_dim, cluster)
    ext = _ext.get()
    if ext is None:
        return torch.tensor(_patch_python(sequence_len, mask_size, p_t_dim, cluster), dtype=torch.long)
    version, internal, gauss = random.getstate()
    out, new_internal = ext.mask_patch_exact(list(internal), sequence_len, mask_size, p_t_dim, cluster)
    random.setstate((version, tuple(new_internal), gauss))
    return out


def gen_maskid_frame(sequence_len: int, mask_size: int) -> torch.Tensor:
    """Frame mask of one sample: ``random.sample(range(sequence_len), mask_size)`` as int64 [M]."""
    for name, v in (("sequence_len", sequence_len), ("mask_size", mask_size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"gen_maskid_frame: {name} must be an int, got {type(v).__name__}")
    if not 1 <= mask_size <= sequence_len:
        raise ValueError(f"gen_maskid_frame: mask_size must be in [1, sequence_len={sequence_len}], got {mask_size}")
    if sequence_len >= 2**31:
        raise ValueError(f"gen_maskid_frame: sequence_len must be < 2**31, got {sequence_len}")
    ext = _ext.get()
    if ext is None:
        return torch.tensor(random.sample(range(sequence_len), mask_size), dtype=torch.long)
    version, internal, gauss = random.getstate()
    out, new_internal = ext.mask_frame_exact(list(internal), sequence_len, mask_size)
    random.setstate((version, tuple(new_internal), gauss))
    return out
