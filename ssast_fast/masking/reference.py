"""The reference's mask algorithms on Python's ``random`` (``ASTModel.gen_maskid_patch`` /
``gen_maskid_frame`` of the SSAST code), and the replay of them compiled in ``ssast_fast._C``.

:func:`patch_python` and :func:`frame_python` are the readable pure path of
:mod:`ssast_fast.masking.exact` and the oracle of the compiled replay's self-check
(:func:`check_replay`, run once by :func:`ssast_fast.masking.dispatch.resolve_backend`).
"""
from __future__ import annotations

import random
from types import ModuleType
from typing import Callable, Optional

import torch

CLUSTER_MIN = 3  # a cluster square has side randrange(cluster) + 3


def patch_python(sequence_len: int, mask_size: int, p_t_dim: int, cluster: int, rng=random) -> list[int]:
    """The reference cluster algorithm; ``rng`` has ``randrange`` (default: the global ``random``)."""
    side = rng.randrange(cluster) + CLUSTER_MIN
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


def frame_python(sequence_len: int, mask_size: int, rng=random) -> list[int]:
    """The reference frame algorithm: ``rng.sample(range(sequence_len), mask_size)``."""
    return rng.sample(range(sequence_len), mask_size)


def replay(fn: Callable, *args: int, batch: int) -> torch.Tensor:
    """Run a compiled generator (``_C.mask_patch_exact`` / ``mask_frame_exact``) on the global
    ``random`` state and write the new state back: int64 [batch, mask_size]."""
    version, internal, gauss = random.getstate()
    out, new_internal = fn(list(internal), *args, batch=batch)
    random.setstate((version, tuple(new_internal), gauss))
    return out


def check_replay(ext: ModuleType) -> Optional[str]:
    """The compiled generators of ``ext`` against :func:`patch_python` / :func:`frame_python` on
    this interpreter (ascending and hashed set order, both frame algorithms), the global
    ``random`` state restored; None, or what differed."""
    saved = random.getstate()
    try:
        for seed, args in ((7, (1212, 400, 101)), (8, (512, 100, 64))):
            random.seed(seed)
            want = [patch_python(*args, 3) for _ in range(2)]
            random.seed(seed)
            if replay(ext.mask_patch_exact, *args, 3, batch=2).tolist() != want:
                return f"cluster masks {args} differ from this Python's random/set"
        random.seed(9)
        want = [frame_python(512, 400), frame_python(60, 20)]
        random.seed(9)
        got = [replay(ext.mask_frame_exact, n, k, batch=1)[0].tolist() for n, k in ((512, 400), (60, 20))]
        if got != want:
            return "frame masks differ from this Python's random.sample"
    finally:
        random.setstate(saved)
    return None
