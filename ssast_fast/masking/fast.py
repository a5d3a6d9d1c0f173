"""Batched mask sampler with the reference generators' distribution (issues 4 and 16).

``sample_masks`` draws a whole batch from torch's RNG; it does not reproduce the reference's
indices (that is ``exact.batch_masks``), only their law. Paths (docs/masks.md):

- The op ``ssast_fast::masks`` (``kernel_op.py``; backends "cpp" and "cuda"): the reference
  algorithm itself (same squares, stop rule and CPython set order, ``random.sample``'s algorithm
  for frames) from one shared source, ``csrc/masking/mask_core.h``, one xoshiro stream per
  sample: in C++ on the CPU (parallel over samples) and as a CUDA kernel (one sample per thread,
  when ``_C_cuda`` is built and passed its self-check). Exact in law for every setting; the same
  seed gives the same masks on both devices.
- Otherwise (backend "torch": CUDA without the kernel, or no extension): the tensor formulation
  below, no host loop, but one host sync per call.

Which one runs: :func:`ssast_fast.masking.dispatch.resolve_backend`.

Cluster masks, per row: side ``c`` uniform in {3, 4, 5}; a sequence of squares with starts
uniform in [0, n), cells ``s + i * t_dim + j`` (i, j < c) kept when 0 < cell < n; stop after
the first square that brings MORE than ``mask_size`` distinct cells; return the first
``mask_size`` of CPython's ``set(collected)`` iteration order. Here every row draws K squares
at once (K twice the expected need, a rare shortfall re-draws more squares for the whole batch);
a min-filter over the square footprint gives each cell's first covering square, the stopping
square is the (M+1)-th smallest of those, and the collected cells are the ones it bounds.

Set order: CPython puts int key k in slot ``k & (S - 1)`` of a table whose final size S is a
function of the number of distinct keys D. When n <= S (512/400/64, 128/40/16, 1212/400/101)
every key is in its home slot, the order is ascending and this sampler is exact in law. When
n > S (e.g. 1212 patches, masks of 100 or 250) colliding keys are probed to other slots; this
tensor path orders by home slot, ties by first occurrence, which keeps a different cell in 8% of
rows for 1212/100 and 34% for 1212/250 (see benchmarks/RESULTS.md, "Fast sampler (issue 4)");
the C++ path replays the set exactly.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from ssast_fast import _ext
from ssast_fast.masking import kernel_op
from ssast_fast.masking.dispatch import resolve_backend

_SIDES = (3, 4, 5)


def _check(batch: int, n: int, mask_size: int, t_dim: int, cluster: bool) -> None:
    for name, v in (("batch", batch), ("n_patches", n), ("mask_size", mask_size), ("t_dim", t_dim)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"sample_masks: {name} must be an int, got {type(v).__name__}")
    if batch < 0:
        raise ValueError(f"sample_masks: batch must be >= 0, got {batch}")
    if cluster:
        if not 2 <= n < 2**31 or t_dim < 1:
            raise ValueError(f"sample_masks: need 2 <= n_patches < 2**31 and t_dim >= 1, got {n}, {t_dim}")
        if not 1 <= mask_size <= n - 2:
            raise ValueError(f"sample_masks: mask_size must be in [1, n_patches - 2] = [1, {n - 2}], got {mask_size}")
    elif not 1 <= mask_size <= n:
        raise ValueError(f"sample_masks: mask_size must be in [1, n_patches={n}], got {mask_size}")


@lru_cache(maxsize=64)
def _table_sizes(n: int) -> tuple[int, ...]:
    """Final CPython set table size after D distinct insertions, for D = 0..n."""
    sizes, size = [8], 8
    for used in range(1, n + 1):
        if used * 5 >= (size - 1) * 3:
            size = 1 << (used * 4 if used <= 50000 else used * 2).bit_length()
        sizes.append(size)
    return tuple(sizes)


@lru_cache(maxsize=64)
def _squares_per_draw(n: int, mask_size: int, t_dim: int) -> int:
    """Squares drawn per row: 1.5x the expected count for side 3 to pass mask_size, + 16."""
    x = torch.arange(1, n, dtype=torch.float64)
    covers = sum(((x - i * t_dim - j) >= 0).double() for i in range(3) for j in range(3))  # starts hitting x
    p_miss = 1 - covers / n

    def short(k: int) -> bool:
        return float((1 - p_miss**k).sum()) < mask_size + 0.5

    lo, hi = 0, 1
    while short(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if short(mid) else (lo, mid)
    return (3 * hi + 1) // 2 + 16


def _first_cover(starts: torch.Tensor, side: torch.Tensor, n: int, t_dim: int) -> torch.Tensor:
    """int64 [B, n]: index of the first square covering each cell, K if none.

    ``starts`` [B, K] are the squares' start cells shifted by ``pad = 4 * t_dim + 4``. Cell x is
    in square k iff its start is ``x - i * t_dim - j`` for some i, j < side, so this is a
    min-filter of each start's first square index over the square's footprint, done separably
    (along j, then along i), offsets i, j >= side disabled per row ([B, 1] ``side``).
    """
    batch, k = starts.shape
    pad = 4 * t_dim + 4  # largest offset in a 5 x 5 square
    first = torch.full((batch, pad + n), k, dtype=torch.long, device=starts.device)
    squares = torch.arange(k, device=starts.device).expand(batch, -1)
    first.scatter_reduce_(1, starts, squares, "amin")  # first square starting at each cell
    off = (side <= torch.tensor([3, 4], device=starts.device)) * k  # [B, 2]: k disables offsets 3, 4
    off = {3: off[:, :1], 4: off[:, 1:]}
    width = pad + n - 4
    row = first[:, 4:]
    for j in range(1, 5):  # row[u] = min over j < side of first[u + 4 - j]
        shifted = first[:, 4 - j: 4 - j + width]
        row = torch.minimum(row, torch.maximum(shifted, off[j]) if j in off else shifted)
    base = pad - 4
    cover = row[:, base: base + n]
    for i in range(1, 5):  # cover[x] = min over i < side of row[x + base - i * t_dim]
        shifted = row[:, base - i * t_dim: base - i * t_dim + n]
        cover = torch.minimum(cover, torch.maximum(shifted, off[i]) if i in off else shifted)
    cover[:, 0] = k  # patch 0 is never masked
    return cover


def _cluster_masks(batch: int, n: int, mask_size: int, t_dim: int,
                   generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    side = torch.randint(_SIDES[0], _SIDES[-1] + 1, (batch, 1), generator=generator, device=device)
    pad = 4 * t_dim + 4
    per_draw = _squares_per_draw(n, mask_size, t_dim)
    starts = torch.randint(pad, pad + n, (batch, per_draw), generator=generator, device=device)
    while True:  # a rare shortfall: more squares for the whole batch after the same prefix
        k = starts.shape[1]
        cover = _first_cover(starts, side, n, t_dim)  # [B, n]
        counts = torch.zeros(batch, k + 1, dtype=torch.long, device=device)
        distinct = counts.scatter_add_(1, cover, torch.ones_like(cover)).cumsum(1)  # [B, K + 1]
        # The first square after which more than M cells are distinct.
        stop = torch.searchsorted(distinct, distinct.new_full((batch, 1), mask_size), right=True)
        if bool((stop < k).all()):
            break
        more = torch.randint(pad, pad + n, (batch, per_draw), generator=generator, device=device)
        starts = torch.cat([starts, more], dim=1)
    kept = cover <= stop  # [B, n]: the collected cells
    if n <= _table_sizes(n)[mask_size + 1]:  # ascending set order for any D > M: the M smallest
        slot = kept.cumsum(1).masked_fill_(~kept, mask_size + 1).clamp_max_(mask_size + 1).sub_(1)
        out = torch.empty(batch, mask_size + 1, dtype=torch.long, device=device)
        return out.scatter_(1, slot, torch.arange(n, device=device).expand(batch, -1))[:, :mask_size]
    size = torch.tensor(_table_sizes(n), device=device)[kept.sum(1, keepdim=True)]
    cells = torch.arange(n, device=device)
    # Home slot, then first occurrence (square, then position in it: ascending cell for t_dim >= 5).
    key = ((cells & (size - 1)) * (k + 1) + cover) * n + cells
    key = torch.where(kept, key, n * (k + 1) * n)
    return key.topk(mask_size, dim=1, largest=False).indices


def sample_masks(batch: int, n_patches: int, mask_size: int, t_dim: int, cluster: bool = True,
                 generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, backend: str = "auto") -> torch.Tensor:
    """Masks of ``batch`` samples with the reference generators' distribution.

    Args:
        batch: B, number of rows.
        n_patches: n, patches per sample (patch index = f * t_dim + t).
        mask_size: M, masked patches per row: [1, n - 2] with ``cluster``, [1, n] without.
        t_dim: patches along time (row length of the patch grid); unused without ``cluster``.
        cluster: square clusters (``gen_maskid_patch``) or frames (``gen_maskid_frame``).
        generator: torch RNG to draw from (default: torch's global CPU one). A CUDA generator
            selects the graph-safe mode: its Philox state seeds the CUDA kernel on the device.
        device: output device (default: the generator's device, else CPU).
        backend: "auto" | "cpp" | "cuda" | "torch" (:mod:`ssast_fast.masking.dispatch`).
    Returns:
        int64 [B, M] of distinct indices in [0, n) (in (0, n) with ``cluster``), each row in the
        reference's order: CPython set order for clusters, random order for frames.

    Seeding (the op ``ssast_fast::masks``; docs/masks.md): by default one 62-bit seed is drawn
    from the CPU generator and sample b uses stream b of it, so ``torch.manual_seed(s)`` gives the
    same masks on the CPU and on CUDA. With a CUDA generator, and inside torch.compile or a CUDA
    graph capture, the seed is drawn on the device (graph-safe: each replay draws new masks).
    """
    _check(batch, n_patches, mask_size, t_dim, cluster)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    on_device = generator is not None and generator.device.type != "cpu"
    if on_device and generator.device.type != device.type:
        raise ValueError(f"sample_masks: a {generator.device.type} generator cannot draw masks on {device}")
    which = resolve_backend(device, backend)
    if batch == 0:
        return torch.empty(0, mask_size, dtype=torch.long, device=device)
    if which != "torch":
        graph_safe = on_device or kernel_op.in_graph()
        seed = -1 if graph_safe else kernel_op.draw_seed(generator)
        if device.type == "cpu" and not graph_safe:  # the op's CPU kernel, without ~8 us of dispatch
            return _ext.get().mask_fast(seed, batch, n_patches, mask_size, t_dim if cluster else 1, cluster)
        return torch.ops.ssast_fast.masks(batch, n_patches, mask_size, t_dim, cluster, seed, device,
                                          generator if graph_safe else None)
    if not cluster:
        noise = torch.rand(batch, n_patches, dtype=torch.float64, generator=generator, device=device)
        return noise.topk(mask_size, dim=1).indices  # a uniformly random ordered M-subset
    return _cluster_masks(batch, n_patches, mask_size, t_dim, generator, device)
