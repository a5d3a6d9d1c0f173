"""sample_masks: exact properties, and its distribution against the reference-exact generator.

Two-sample tests, fixed seeds: ROWS masks from ``batch_masks`` (the reference algorithm, replayed
in C++ from Python's ``random``) against ROWS from ``sample_masks`` (torch's RNG). On the CPU
``sample_masks`` runs the shared mask core (csrc/masking/mask_core.h), the code the CUDA kernel
runs, so these tests are the core's statistical suite, in every setting including the hashed
set order of 1212/100 and 1212/250. Per setting a family of tests, Bonferroni-corrected to
family-wise alpha = 0.001:
  * per-position inclusion: a two-proportion z-test per position (rows are independent, positions
    within a row are not, hence per-position tests and Bonferroni rather than one chi-square);
  * chi-square homogeneity (2 x k, adjacent values pooled until every bin holds >= MIN_BIN rows) of
    per-row statistics: connected clusters on the patch grid, horizontal runs, the largest index
    (clusters), and the first index and runs (frames).
"""
from __future__ import annotations

import random

import pytest
import torch

from ssast_fast import _ext
from ssast_fast.masking import batch_masks, sample_masks
from ssast_fast.masking import fast, kernel_op

ROWS = 4000
ALPHA = 1e-3
MIN_BIN = 40
CLUSTER_SETTINGS = [(512, 400, 64), (128, 40, 16), (1212, 400, 101), (64, 24, 8)]
HASHED_SETTINGS = [(1212, 100, 101), (1212, 250, 101)]  # n > CPython's final set table size
FRAME_SETTINGS = [(512, 400), (128, 50)]


def _chi2_sf(x: float, df: int) -> float:
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(x / 2, dtype=torch.float64)))


def _normal_two_sided(z: torch.Tensor) -> torch.Tensor:
    return torch.special.erfc(z.abs() / 2**0.5)


def marginal_p(a: torch.Tensor, b: torch.Tensor, n: int) -> float:
    """Bonferroni p-value over positions of per-position two-proportion z-tests."""
    pa = torch.zeros(a.shape[0], n, dtype=torch.bool).scatter_(1, a, True).double().mean(0)
    pb = torch.zeros(b.shape[0], n, dtype=torch.bool).scatter_(1, b, True).double().mean(0)
    pooled = (pa + pb) / 2
    var = pooled * (1 - pooled) * (1 / a.shape[0] + 1 / b.shape[0])
    tested = var > 0
    p = _normal_two_sided((pa - pb)[tested] / var[tested].sqrt())
    return min(1.0, float(p.min()) * int(tested.sum()))


def homogeneity_p(a: torch.Tensor, b: torch.Tensor) -> float:
    """Chi-square homogeneity of two samples of an integer statistic, sparse values pooled."""
    values, counts = torch.cat([a, b]).unique(return_counts=True)
    edges, acc = [], 0
    for v, c in zip(values.tolist(), counts.tolist()):  # close a bin once it holds MIN_BIN rows
        acc += c
        if acc >= MIN_BIN:
            edges.append(v)
            acc = 0
    # The last boundary goes: the last full bin takes the values above it (a short tail).
    edges = torch.tensor(edges[:-1], dtype=a.dtype)
    if edges.numel() == 0:
        return 1.0
    table = torch.stack([torch.bincount(torch.bucketize(s.contiguous(), edges), minlength=edges.numel() + 1)
                         for s in (a, b)]).double()  # [2, k]
    expected = table.sum(1, keepdim=True) * table.sum(0, keepdim=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return _chi2_sf(stat, table.shape[1] - 1)


def clusters(masks: torch.Tensor, n: int, t_dim: int) -> torch.Tensor:
    """Connected components per row on the (n // t_dim) x t_dim patch grid, 4-neighbourhood."""
    rows = masks.shape[0]
    on = torch.zeros(rows, n + 1, dtype=torch.bool).scatter_(1, masks, True)  # column n: off
    idx = torch.arange(n + 1).expand(rows, -1)
    parent = torch.where(on, idx, n)
    right = torch.zeros(n + 1, dtype=torch.bool)
    right[:n] = (torch.arange(n) % t_dim) != t_dim - 1  # x and x + 1 share a grid row
    pairs = [(right[:-1] & on[:, :-1] & on[:, 1:], 1), (on[:, :-t_dim] & on[:, t_dim:], t_dim)]
    while True:  # hook each root to its smallest neighbouring label, then jump pointers
        low = parent.clone()
        for linked, d in pairs:
            low[:, :-d] = torch.where(linked, torch.minimum(low[:, :-d], parent[:, d:]), low[:, :-d])
            low[:, d:] = torch.where(linked, torch.minimum(low[:, d:], parent[:, :-d]), low[:, d:])
        new = parent.scatter_reduce(1, parent, low, "amin")
        while not torch.equal(jumped := new.gather(1, new), new):
            new = jumped
        if torch.equal(new, parent):
            return (on & (parent == idx))[:, :n].sum(1)
        parent = new


def runs(masks: torch.Tensor, n: int) -> torch.Tensor:
    """Maximal runs of consecutive indices per row."""
    on = torch.zeros(masks.shape[0], n + 1, dtype=torch.bool).scatter_(1, masks + 1, True)
    return (on[:, 1:] & ~on[:, :-1]).sum(1)


def reference_rows(n: int, m: int, t_dim: int, cluster: bool, seed: int) -> torch.Tensor:
    random.seed(seed)
    return batch_masks(ROWS, n, m, t_dim, cluster)


def fast_rows(n: int, m: int, t_dim: int, cluster: bool, seed: int) -> torch.Tensor:
    return sample_masks(ROWS, n, m, t_dim, cluster, generator=torch.Generator().manual_seed(seed))


def cluster_pvalues(a: torch.Tensor, b: torch.Tensor, n: int, t_dim: int) -> dict[str, float]:
    return {
        "marginal": marginal_p(a, b, n),
        "clusters": homogeneity_p(clusters(a, n, t_dim), clusters(b, n, t_dim)),
        "runs": homogeneity_p(runs(a, n), runs(b, n)),
        "max": homogeneity_p(a.amax(1), b.amax(1)),
    }


@pytest.fixture(scope="module", autouse=True)
def _compiled_reference():
    if not _ext.available():
        pytest.fail("the reference samples come from the compiled exact generator: build ssast_fast._C")


@pytest.mark.parametrize("n,m,t_dim", CLUSTER_SETTINGS)
def test_cluster_distribution_matches_reference(n, m, t_dim, ext_path):
    a, b = reference_rows(n, m, t_dim, True, seed=1000 + n), fast_rows(n, m, t_dim, True, seed=2000 + n)
    pvalues = cluster_pvalues(a, b, n, t_dim)
    assert min(pvalues.values()) > ALPHA / len(pvalues), pvalues


@pytest.mark.parametrize("n,m,t_dim", HASHED_SETTINGS)
def test_core_exact_in_law_where_set_order_is_not_ascending(n, m, t_dim):
    """The core (CPU sampler and CUDA kernel) replays CPython's set, so it also matches where the
    order is hashed (the tensor-op path does not: benchmarks/RESULTS.md)."""
    a, b = reference_rows(n, m, t_dim, True, seed=5000 + m), fast_rows(n, m, t_dim, True, seed=6000 + m)
    pvalues = cluster_pvalues(a, b, n, t_dim)
    assert min(pvalues.values()) > ALPHA / len(pvalues), pvalues


@pytest.mark.parametrize("n,m,t_dim", [(512, 400, 64), (1212, 250, 101)])
def test_core_graph_safe_seeds_match_reference(n, m, t_dim):
    """Graph-safe mode: the core seeded by seed_from_philox(seed, offset), successive offsets."""
    a = reference_rows(n, m, t_dim, True, seed=7000 + m)
    rows = ROWS // 8
    b = torch.cat([_ext.get().mask_fast(kernel_op.philox_seed(8000 + m, 4 * k), rows, n, m, t_dim, True)
                   for k in range(8)])
    pvalues = cluster_pvalues(a, b, n, t_dim)
    assert min(pvalues.values()) > ALPHA / len(pvalues), pvalues


@pytest.mark.parametrize("n,m", FRAME_SETTINGS)
def test_frame_distribution_matches_reference(n, m, ext_path):
    a, b = reference_rows(n, m, 1, False, seed=3000 + n), fast_rows(n, m, 1, False, seed=4000 + n)
    pvalues = {
        "marginal": marginal_p(a, b, n),
        "first": homogeneity_p(a[:, 0], b[:, 0]),  # order is random, not sorted
        "runs": homogeneity_p(runs(a, n), runs(b, n)),
    }
    assert min(pvalues.values()) > ALPHA / len(pvalues), pvalues


def test_shortfall_top_up_keeps_distribution(monkeypatch):
    monkeypatch.setattr(_ext, "get", lambda: None)  # the tensor path tops up
    monkeypatch.setattr(fast, "_squares_per_draw", lambda n, m, t_dim: 1)  # top up every square
    a, b = reference_rows(128, 40, 16, True, seed=5), fast_rows(128, 40, 16, True, seed=6)
    pvalues = cluster_pvalues(a, b, 128, 16)
    assert min(pvalues.values()) > ALPHA / len(pvalues), pvalues


def test_tests_detect_a_truncation_off_by_one(ext_path):
    """Power check: drop the smallest of M + 1 cells instead of keeping the M smallest of M."""
    a = reference_rows(128, 40, 16, True, seed=7)
    b = sample_masks(ROWS, 128, 41, 16, generator=torch.Generator().manual_seed(8))[:, 1:]
    assert min(cluster_pvalues(a, b, 128, 16).values()) < ALPHA / 4


@pytest.mark.parametrize("n,m,t_dim", CLUSTER_SETTINGS + HASHED_SETTINGS)
def test_cluster_rows_exact_properties(n, m, t_dim, ext_path):
    out = sample_masks(64, n, m, t_dim, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.long and out.device.type == "cpu" and out.shape == (64, m)
    assert int(out.min()) >= 1 and int(out.max()) < n
    assert all(len(set(row)) == m for row in out.tolist())
    if n <= fast._table_sizes(n)[m + 1]:  # CPython's set order is ascending here
        assert bool((out[:, 1:] > out[:, :-1]).all())


def test_frame_rows_exact_properties(ext_path):
    out = sample_masks(64, 128, 50, 16, cluster=False, generator=torch.Generator().manual_seed(0))
    assert out.shape == (64, 50) and out.dtype == torch.long
    assert int(out.min()) >= 0 and int(out.max()) < 128
    assert all(len(set(row)) == 50 for row in out.tolist())
    assert not bool((out[:, 1:] > out[:, :-1]).all())  # random order
    full = sample_masks(3, 10, 10, 1, cluster=False)
    assert full.sort(1).values.tolist() == [list(range(10))] * 3


@pytest.mark.parametrize("cluster", [True, False])
def test_seeded_generator_is_deterministic(cluster, ext_path):
    draw = lambda seed: sample_masks(8, 512, 400, 64, cluster, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    torch.manual_seed(5)
    a = sample_masks(8, 512, 400, 64, cluster)
    torch.manual_seed(5)
    assert torch.equal(a, sample_masks(8, 512, 400, 64, cluster))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("cluster", [True, False])
def test_cuda(cluster):
    draw = lambda: sample_masks(24, 512, 400, 64, cluster, generator=torch.Generator("cuda").manual_seed(1),
                                device="cuda")
    out = draw()
    assert out.device.type == "cuda" and out.dtype == torch.long and out.shape == (24, 400)
    assert torch.equal(out, draw())
    assert all(len(set(row)) == 400 for row in out.tolist())
    assert int(out.min()) >= (1 if cluster else 0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        sample_masks(2, 128, 127, 16)  # cluster masks need mask_size <= n - 2
    with pytest.raises(ValueError):
        sample_masks(2, 128, 0, 16)
    with pytest.raises(ValueError):
        sample_masks(2, 128, 129, 16, cluster=False)
    with pytest.raises(TypeError):
        sample_masks(2, 128, 40.0, 16)
    with pytest.raises(TypeError):
        sample_masks(2, True, 40, 16)
    assert sample_masks(2, 128, 126, 16).shape == (2, 126)
    assert sample_masks(0, 128, 40, 16).shape == (0, 40)
