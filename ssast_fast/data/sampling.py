"""Which clips an epoch visits: shuffled (every clip once) or balanced (weighted draws).

Balanced sampling (the reference's ``--bal bal``): per-clip weights from
``<training JSON without .json>_weight.csv``; each epoch draws as many clips as the dataset holds,
with replacement, clip ``i`` with probability ``w_i / sum(w)``. The draws come from a torch
generator seeded by ``seed + epoch`` (every process draws the same epoch) and process ``r`` of
``world`` takes draws ``r, r + world, ...`` (padded to a multiple of ``world`` from the start, as
``DistributedSampler``), so a multi-process epoch is the single-process one split, and a resumed
epoch is the same epoch.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch.utils.data import DistributedSampler

MAX_CATEGORIES = 2**24  # torch.multinomial's limit


def weight_csv_path(train_json: str) -> str:
    """``<train json without .json>_weight.csv`` (the reference's ``data_train[:-5] + '_weight.csv'``)."""
    if not train_json.endswith(".json"):
        raise ValueError(f"--bal bal reads <training JSON without .json>_weight.csv, but --data-train "
                         f"{train_json!r} does not end in .json")
    return train_json[:-5] + "_weight.csv"


def load_sample_weights(train_json: str, n_clips: int) -> torch.Tensor:
    """float64 [n_clips] weights from :func:`weight_csv_path`; ValueError for a missing file, a count
    that differs from the dataset's, negative or non-finite values, or all zeros."""
    path = weight_csv_path(train_json)
    if not os.path.isfile(path):
        raise ValueError(f"--bal bal: weight file {path!r} not found (one weight per clip of {train_json!r}, "
                         "comma or newline separated)")
    try:
        w = np.atleast_1d(np.loadtxt(path, delimiter=",", dtype=np.float64)).reshape(-1)
    except ValueError as exc:
        raise ValueError(f"--bal bal: weight file {path!r} is not a list of numbers: {exc}") from exc
    if w.shape[0] != n_clips:
        raise ValueError(f"--bal bal: weight file {path!r} holds {w.shape[0]} weights, the training JSON "
                         f"{n_clips} clips")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"--bal bal: weights in {path!r} must be finite, >= 0 and not all zero")
    if n_clips > MAX_CATEGORIES:
        raise ValueError(f"--bal bal: at most {MAX_CATEGORIES} clips can be sampled by weight, got {n_clips}")
    return torch.from_numpy(w)


def balanced_indices(weights: torch.Tensor, *, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """This process's clip indices of epoch ``epoch`` under balanced sampling (module docstring)."""
    n = weights.shape[0]
    g = torch.Generator().manual_seed(seed + epoch)
    draws = torch.multinomial(weights, n, replacement=True, generator=g).tolist()
    padded = math.ceil(n / world) * world
    draws += draws[: padded - n]
    return draws[rank:padded:world]


def epoch_indices(n_clips: int, weights: torch.Tensor | None, *, shuffle: bool, seed: int, epoch: int,
                  rank: int = 0, world: int = 1) -> list[int]:
    """Clip indices of this process for ``epoch``: balanced draws when ``weights`` is given, otherwise
    ``DistributedSampler``'s order (shuffled by ``seed + epoch`` when ``shuffle``)."""
    if weights is not None:
        return balanced_indices(weights, seed=seed, epoch=epoch, rank=rank, world=world)
    sampler = DistributedSampler(range(n_clips), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed,
                                 drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)
