"""Reference-exact mask generators against maskgen.json, on the C++ and the pure path."""
import hashlib
import json
import random

import pytest
import torch

from golden import golden_root
from ssast_fast import _ext
from ssast_fast.masking import batch_masks, gen_maskid_frame, gen_maskid_patch

RECORDS = json.loads((golden_root() / "model" / "maskgen.json").read_text())["records"]


def state_hash() -> str:
    return hashlib.sha256(repr(random.getstate()).encode()).hexdigest()


def record_calls(r):
    if r["fn"] == "alternating":
        return r["calls"]
    args = [r["sequence_len"], r["mask_size"]]
    if r["fn"] == "gen_maskid_patch":
        args += [r["p_t_dim"], r["cluster"]]
    return [[r["fn"], *args]] * r["calls_after_seed"]


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: f"{r['fn']}-{r['seed']}-{r.get('sequence_len')}-{r.get('mask_size')}")
def test_maskgen_records(rec, ext_path):
    random.seed(rec["seed"])
    for call, want, want_state in zip(record_calls(rec), rec["outputs"], rec["python_random_state_sha256_after"]):
        fn = gen_maskid_patch if call[0] == "gen_maskid_patch" else gen_maskid_frame
        got = fn(*call[1:])
        assert got.dtype == torch.long
        assert got.tolist() == want
        assert state_hash() == want_state


@pytest.mark.parametrize("seed", range(12))
def test_compiled_equals_python_on_random_configs(seed):
    """Other sizes, grids and seeds than the fixtures: both paths give the same masks and state."""
    if not _ext.available():
        pytest.fail("compiled extension not built")
    rng = random.Random(seed)
    for _ in range(10):
        n = rng.choice([6, 32, 64, 128, 300, 512, 600, 1212, 2048])
        m = rng.randrange(1, n - 1)
        p_t_dim = rng.choice([1, 2, 8, 16, 64, 101, n])
        cluster = rng.random() < 0.7
        s = rng.randrange(2**40)
        random.seed(s)
        a = batch_masks(3, n, m, p_t_dim, cluster)
        after_a = random.getstate()
        with _ext.pure():
            random.seed(s)
            b = batch_masks(3, n, m, p_t_dim, cluster)
        assert torch.equal(a, b), (n, m, p_t_dim, cluster, s)
        assert random.getstate() == after_a
        assert all(len(set(row)) == m for row in a.tolist())
        if cluster:
            assert int(a.min()) > 0


def test_cpython_set_order_emulation():
    if not _ext.available():
        pytest.fail("compiled extension not built")
    rng = random.Random(5)
    for _ in range(200):
        hi = rng.choice([10, 100, 2000, 10**5])
        vals = [rng.randrange(hi) for _ in range(rng.randrange(3000))]
        assert _ext.get().cpython_set_order(vals) == list(set(vals))


def test_batch_equals_per_sample_calls(ext_path):
    random.seed(3)
    rows = [gen_maskid_patch(512, 400, 64) for _ in range(4)]
    after = random.getstate()
    random.seed(3)
    assert torch.equal(batch_masks(4, 512, 400, 64, True), torch.stack(rows))
    assert random.getstate() == after


@pytest.mark.parametrize("args", [(32, 31, 8), (32, 32, 8), (32, 0, 8), (1, 1, 1), (32, 10, 0)])
def test_patch_bad_sizes_raise_instead_of_looping(args, ext_path):
    before = random.getstate()
    with pytest.raises(ValueError, match="gen_maskid_patch"):
        gen_maskid_patch(*args)
    assert random.getstate() == before


def test_frame_bad_sizes(ext_path):
    with pytest.raises(ValueError, match="mask_size"):
        gen_maskid_frame(10, 11)
    with pytest.raises(ValueError, match="mask_size"):
        gen_maskid_frame(10, 0)
    with pytest.raises(TypeError, match="int"):
        gen_maskid_frame(10.0, 3)
    with pytest.raises(TypeError, match="int"):
        gen_maskid_patch(512, True, 64)


def test_largest_patch_mask_terminates(ext_path):
    random.seed(0)
    got = gen_maskid_patch(32, 30, 8)
    assert sorted(got.tolist()) != [] and len(set(got.tolist())) == 30 and 0 not in got.tolist()
