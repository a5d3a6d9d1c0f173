"""The shared mask core (csrc/masking/mask_core.h) compiled as host code, against the reference.

``_C.mask_fast`` is the host build of the core the CUDA kernel runs. Here its rows are compared,
bit for bit, with the reference algorithm written in Python (``reference.patch_python``, with
CPython's own ``set``, and ``random.sample``) driven by the same xoshiro stream, re-implemented
in Python below: sample b of seed s uses stream b. The C++ unit test (csrc/tests/test_mask_core.cpp)
pins the core to the CPU sampler's masks from before the core was shared with the kernel.
"""
from __future__ import annotations

import random

import pytest
import torch

from ssast_fast import _ext
from ssast_fast.masking import kernel_op, reference

M32, M64 = (1 << 32) - 1, (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & M64


class XoshiroRandom(random.Random):
    """xoshiro256** stream ``stream`` of ``seed`` as mask_core.h seeds it; ``randrange`` and
    ``sample`` draw through Lemire's bounded integers as the core's ``below``."""

    def __init__(self, seed: int, stream: int):
        super().__init__(0)
        x = seed ^ ((GAMMA * (stream + 1)) & M64)
        self.words = []
        for _ in range(4):
            x = (x + GAMMA) & M64
            self.words.append(mix64(x))

    def next_u64(self) -> int:
        s = self.words
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def _randbelow(self, n: int) -> int:
        m = (self.next_u64() >> 32) * n
        if (m & M32) < n:
            threshold = ((1 << 32) - n) % n
            while (m & M32) < threshold:
                m = (self.next_u64() >> 32) * n
        return m >> 32


def python_rows(seed: int, batch: int, n: int, m: int, t_dim: int, cluster: bool) -> list[list[int]]:
    if cluster:
        return [reference.patch_python(n, m, t_dim, 3, rng=XoshiroRandom(seed, b)) for b in range(batch)]
    return [reference.frame_python(n, m, rng=XoshiroRandom(seed, b)) for b in range(batch)]


# Ascending and hashed set orders (1212/100, 1212/250, 5000/200, 1000/50), both frame algorithms.
SETTINGS = [(512, 400, 64, True), (1212, 100, 101, True), (1212, 250, 101, True), (1212, 400, 101, True),
            (128, 40, 16, True), (64, 24, 8, True), (5000, 200, 100, True), (1000, 50, 1, True), (32, 30, 8, True),
            (512, 400, 1, False), (2048, 10, 1, False), (60, 20, 1, False), (10, 3, 1, False), (100, 3, 1, False)]


@pytest.fixture(scope="module", autouse=True)
def _host_core():
    if not _ext.available():
        pytest.fail("the host build of the mask core is ssast_fast._C: build it")


@pytest.mark.parametrize("n,m,t_dim,cluster", SETTINGS)
@pytest.mark.parametrize("seed", [0, 2**62 - 1, 123456789])
def test_host_core_is_the_reference_algorithm_on_its_streams(n, m, t_dim, cluster, seed):
    got = _ext.get().mask_fast(seed, 6, n, m, t_dim, cluster)
    assert got.tolist() == python_rows(seed, 6, n, m, t_dim, cluster)


@pytest.mark.parametrize("trial", range(8))
def test_host_core_on_random_settings(trial):
    rng = random.Random(trial)
    for _ in range(6):
        n = rng.choice([6, 40, 128, 300, 700, 1212, 2048, 4100])
        cluster = rng.random() < 0.7
        m = rng.randrange(1, n - 1 if cluster else n + 1)
        t_dim = rng.choice([1, 2, 8, 16, 64, 101, n])
        seed = rng.randrange(2**62)
        got = _ext.get().mask_fast(seed, 3, n, m, t_dim, cluster)
        assert got.tolist() == python_rows(seed, 3, n, m, t_dim, cluster), (n, m, t_dim, cluster, seed)


def test_sampler_on_cpu_is_the_host_core():
    """sample_masks on the CPU: one seed from the CPU generator, stream b for sample b."""
    from ssast_fast.masking import sample_masks

    for cluster in (True, False):
        seed = kernel_op.draw_seed(torch.Generator().manual_seed(11))
        want = _ext.get().mask_fast(seed, 5, 1212, 100, 101, cluster)
        assert torch.equal(sample_masks(5, 1212, 100, 101, cluster, generator=torch.Generator().manual_seed(11)), want)


@pytest.mark.parametrize("seed,offset", [(0, 0), (67280421310721, 4), (2**64 - 1, 2**64 - 4), (42, 1 << 40)])
def test_philox_seed_formula(seed, offset):
    """Graph-safe mode's stream seed, as documented: mix64(offset ^ mix64(seed + gamma)) >> 2."""
    want = mix64(offset ^ mix64((seed + GAMMA) & M64)) >> 2
    assert kernel_op.philox_seed(seed, offset) == want < 2**62
