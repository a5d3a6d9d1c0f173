"""The mask family's backend choice (ssast_fast.masking.dispatch.resolve_backend): the CPU rules,
the user's choice on both samplers, clear errors for a backend that cannot run."""
from __future__ import annotations

import random

import pytest
import torch

from ssast_fast import _ext
from ssast_fast.masking import batch_masks, sample_masks
from ssast_fast.masking.dispatch import resolve_backend
from ssast_fast.ops import dispatch


@pytest.fixture(autouse=True)
def fresh_state():
    dispatch.reset()
    yield
    dispatch.reset()


def test_auto_on_the_cpu_and_recorded():
    built = _ext.available()
    assert resolve_backend("cpu") == ("cpp" if built else "torch")
    assert resolve_backend("cpu", exact=True) == ("cpp" if built else "python")
    with _ext.pure():
        assert resolve_backend(torch.device("cpu")) == "torch"
    rec = {d["key"]: d for d in dispatch.record() if d["op"] == "masks"}
    assert set(rec) == {"sampler, cpu", "reference generators, cpu"}


@pytest.mark.parametrize("device, backend, exact, exc", [
    ("cpu", "gpu", False, ValueError), ("cpu", "cuda", False, ValueError),
    ("cuda", "cpp", False, ValueError), ("cpu", "torch", True, ValueError),
])
def test_bad_choices_are_clear_errors(device, backend, exact, exc):
    with pytest.raises(exc, match="backend"):
        resolve_backend(device, backend, exact=exact)
    if not exact:
        with pytest.raises(exc, match="backend"):
            sample_masks(2, 64, 10, 8, device=device, backend=backend)


@pytest.mark.parametrize("cluster", [True, False])
def test_torch_backend_on_the_cpu(cluster):
    """The tensor-op formulation chosen by hand on the CPU: valid rows, as the torch path draws."""
    n, m, t_dim = 512, 400, 64
    idx = sample_masks(16, n, m, t_dim, cluster, generator=torch.Generator().manual_seed(0), backend="torch")
    assert idx.shape == (16, m) and idx.dtype == torch.long
    assert all(len(set(row)) == m and min(row) >= (1 if cluster else 0) and max(row) < n for row in idx.tolist())
    with _ext.pure():  # auto without the extension is the same path
        again = sample_masks(16, n, m, t_dim, cluster, generator=torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)


@pytest.mark.parametrize("cluster", [True, False])
def test_reference_generators_agree_on_every_backend(cluster):
    if not _ext.available():
        pytest.fail("compiled extension ssast_fast._C is not built")
    out = {}
    for backend in ("cpp", "python", "auto"):
        random.seed(5)
        out[backend] = batch_masks(3, 1212, 250, 101, cluster, backend=backend), random.getstate()
    for backend in ("python", "auto"):
        assert torch.equal(out[backend][0], out["cpp"][0]) and out[backend][1] == out["cpp"][1]
