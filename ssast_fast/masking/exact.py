"""Reference-exact mask generators (the SSAST reference's algorithms, bit for bit).

Both draw from Python's global ``random`` module exactly as the reference does and leave it in
the same state. The compiled path (``ssast_fast._C``) replays CPython's Mersenne Twister stream
and CPython's set iteration order in C++; the pure path below is the readable reference for it.
On first use the compiled path is checked against the pure one on this interpreter; if they
ever disagree (a CPython whose set or ``random.sample`` differs), the pure path is used.
"""
from __future__ import annotations

import random
import warnings

import torch

from ssast_fast import _ext

_CLUSTER_MIN = 3  # a cluster square has side randrange(cluster) + 3
_ext_verified: bool | None = None


def _check_int(fn: str, **values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__}")


def _check_patch_args(sequence_len: int, mask_size: int, p_t_dim: int, cluster: int) -> None:
    _check_int("gen_maskid_patch", sequence_len=sequence_len, mask_size=mask_size, p_t_dim=p_t_dim, cluster=cluster)
    if not 2 <= sequence_len < 2**31:
        raise ValueError(f"gen_maskid_patch: sequence_len must be in [2, 2**31), got {sequence_len}")
    if not 1 <= mask_size <= sequence_len - 2:
        # Patch 0 is never masked and the reference loops until MORE than mask_size indices are
        # distinct, so mask_size >= sequence_len - 1 never terminates there.
        raise ValueError(
            f"gen_maskid_patch: mask_size must be in [1, sequence_len - 2] = [1, {sequence_len - 2}], "
            f"got {mask_size} (the reference loops forever for mask_size >= sequence_len - 1)"
        )
    if p_t_dim < 1 or cluster < 1:
        raise ValueError(f"gen_maskid_patch: p_t_dim and cluster must be >= 1, got {p_t_dim} and {cluster}")


def _check_frame_args(sequence_len: int, mask_size: int) -> None:
    _check_int("gen_maskid_frame", sequence_len=sequence_len, mask_size=mask_size)
    if not 1 <= sequence_len < 2**31:
        raise ValueError(f"gen_maskid_frame: sequence_len must be in [1, 2**31), got {sequence_len}")
    if not 1 <= mask_size <= sequence_len:
        raise ValueError(f"gen_maskid_frame: mask_size must be in [1, sequence_len={sequence_len}], got {mask_size}")


def _patch_python(sequence_len: int, mask_size: int, p_t_dim: int, cluster: int, rng=random) -> list[int]:
    """The reference algorithm; ``rng`` has ``randrange`` (default: the global ``random``)."""
    side = rng.randrange(cluster) + _CLUSTER_MIN
    collected: list[int] = []
    distinct: set[int] = set()
    while len(distinct) <= mask_size:
        start = rng.randrange(sequence_len)
        for i in range(side):
            for j in range(side):
                cand = start + p_t_dim * i + j  # not clipped at the row end: wraps to the next row
                if 0 < cand < sequence_len:
                    collected.append(cand)
                    distinct.add(cand)
    # The reference keeps the first mask_size elements of set(list) in CPython's iteration
    # order, which depends on the insertion order; rebuild the set the same way.
    return list(set(collected))[:mask_size]


def _frame_python(sequence_len: int, mask_size: int, rng=random) -> list[int]:
    return rng.sample(range(sequence_len), mask_size)


def _run_ext(fn, *args, batch: int) -> torch.Tensor:
    """Run a compiled generator on the global ``random`` state and write the new state back."""
    version, internal, gauss = random.getstate()
    out, new_internal = fn(list(internal), *args, batch=batch)
    random.setstate((version, tuple(new_internal), gauss))
    return out


def _compiled():
    """The compiled module if present and verified on this interpreter, else None."""
    global _ext_verified
    ext = _ext.get()
    if ext is None or _ext_verified is False:
        return None
    if _ext_verified is None:
        saved = random.getstate()
        try:
            ok = True
            for seed, args in ((7, (1212, 400, 101)), (8, (512, 100, 64))):
                random.seed(seed)
                want = [_patch_python(*args, 3) for _ in range(2)]
                random.seed(seed)
                got = _run_ext(ext.mask_patch_exact, *args, 3, batch=2).tolist()
                ok &= got == want
            random.seed(9)
            want = [_frame_python(512, 400), _frame_python(60, 20)]
            random.seed(9)
            got = [_run_ext(ext.mask_frame_exact, n, k, batch=1)[0].tolist() for n, k in ((512, 400), (60, 20))]
            ok &= got == want
        finally:
            random.setstate(saved)
        _ext_verified = ok
        if not ok:
            warnings.warn("ssast_fast: compiled mask generator disagrees with this Python's random/set; "
                          "using the pure-Python generator", RuntimeWarning, stacklevel=3)
            return None
    return ext


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
    ext = _compiled()
    if ext is None:
        return torch.tensor(_patch_python(sequence_len, mask_size, p_t_dim, cluster), dtype=torch.long)
    return _run_ext(ext.mask_patch_exact, sequence_len, mask_size, p_t_dim, cluster, batch=1)[0]


def gen_maskid_frame(sequence_len: int, mask_size: int) -> torch.Tensor:
    """Frame mask of one sample: ``random.sample(range(sequence_len), mask_size)`` as int64 [M]."""
    _check_frame_args(sequence_len, mask_size)
    ext = _compiled()
    if ext is None:
        return torch.tensor(_frame_python(sequence_len, mask_size), dtype=torch.long)
    return _run_ext(ext.mask_frame_exact, sequence_len, mask_size, batch=1)[0]


def batch_masks(batch: int, sequence_len: int, mask_size: int, p_t_dim: int, cluster: bool) -> torch.Tensor:
    """Masks of ``batch`` samples drawn one after another, as the reference forward's loop.

    Returns int64 [batch, mask_size] on the CPU; row i is the i-th call of
    ``gen_maskid_patch(sequence_len, mask_size, p_t_dim)`` (``cluster=True``) or of
    ``gen_maskid_frame(sequence_len, mask_size)`` (``cluster=False``).
    """
    if cluster:
        _check_patch_args(sequence_len, mask_size, p_t_dim, 3)
    else:
        _check_frame_args(sequence_len, mask_size)
    ext = _compiled()
    if ext is not None:
        if cluster:
            return _run_ext(ext.mask_patch_exact, sequence_len, mask_size, p_t_dim, 3, batch=batch)
        return _run_ext(ext.mask_frame_exact, sequence_len, mask_size, batch=batch)
    if cluster:
        rows = [_patch_python(sequence_len, mask_size, p_t_dim, 3) for _ in range(batch)]
    else:
        rows = [_frame_python(sequence_len, mask_size) for _ in range(batch)]
    return torch.tensor(rows, dtype=torch.long).reshape(batch, mask_size)
