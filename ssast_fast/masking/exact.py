"""Reference-exact mask generators (the SSAST reference's algorithms, bit for bit).

All draw from Python's global ``random`` module exactly as the reference does and leave it in
the same state. Backends (:func:`ssast_fast.masking.dispatch.resolve_backend` with
``exact=True``): ``"cpp"``, the compiled replay of CPython's Mersenne Twister stream and set
iteration order (``ssast_fast._C``), once it passed its self-check against the pure path on this
interpreter; ``"python"``, the readable algorithms of :mod:`ssast_fast.masking.reference`. If the
two ever disagree (a CPython whose set or ``random.sample`` differs), ``auto`` takes the pure path
(one warning).
"""
from __future__ import annotations

import torch

from ssast_fast import _ext
from ssast_fast.masking.dispatch import resolve_backend
from ssast_fast.masking.reference import frame_python, patch_python, replay

_CPU = torch.device("cpu")


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


def _compiled(backend: str = "auto"):
    """The compiled module when ``backend`` resolves to it, else None (the pure path)."""
    return _ext.get() if resolve_backend(_CPU, backend, exact=True) == "cpp" else None


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
        return torch.tensor(patch_python(sequence_len, mask_size, p_t_dim, cluster), dtype=torch.long)
    return replay(ext.mask_patch_exact, sequence_len, mask_size, p_t_dim, cluster, batch=1)[0]


def gen_maskid_frame(sequence_len: int, mask_size: int) -> torch.Tensor:
    """Frame mask of one sample: ``random.sample(range(sequence_len), mask_size)`` as int64 [M]."""
    _check_frame_args(sequence_len, mask_size)
    ext = _compiled()
    if ext is None:
        return torch.tensor(frame_python(sequence_len, mask_size), dtype=torch.long)
    return replay(ext.mask_frame_exact, sequence_len, mask_size, batch=1)[0]


def batch_masks(batch: int, sequence_len: int, mask_size: int, p_t_dim: int, cluster: bool,
                backend: str = "auto") -> torch.Tensor:
    """Masks of ``batch`` samples drawn one after another, as the reference forward's loop.

    Returns int64 [batch, mask_size] on the CPU; row i is the i-th call of
    ``gen_maskid_patch(sequence_len, mask_size, p_t_dim)`` (``cluster=True``) or of
    ``gen_maskid_frame(sequence_len, mask_size)`` (``cluster=False``). ``backend``: "auto" |
    "cpp" | "python" (module docstring); every backend gives the same masks.
    """
    if cluster:
        _check_patch_args(sequence_len, mask_size, p_t_dim, 3)
    else:
        _check_frame_args(sequence_len, mask_size)
    ext = _compiled(backend)
    if ext is not None:
        if cluster:
            return replay(ext.mask_patch_exact, sequence_len, mask_size, p_t_dim, 3, batch=batch)
        return replay(ext.mask_frame_exact, sequence_len, mask_size, batch=batch)
    if cluster:
        rows = [patch_python(sequence_len, mask_size, p_t_dim, 3) for _ in range(batch)]
    else:
        rows = [frame_python(sequence_len, mask_size) for _ in range(batch)]
    return torch.tensor(rows, dtype=torch.long).reshape(batch, mask_size)
