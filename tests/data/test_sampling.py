"""Balanced sampling (``--bal bal``): frequencies match the weights, multi-process epochs are the
single-process epoch split, the weight file is read and checked as the reference reads it."""
import json
import math
from argparse import Namespace

import numpy as np
import pytest
import torch

from ssast_fast.data.sampling import balanced_indices, epoch_indices, load_sample_weights, weight_csv_path

ALPHA = 1e-4  # false-alarm rate of the goodness-of-fit test: a correct sampler fails it for 1 seed in 10,000


def chi2_critical(df: int, alpha: float) -> float:
    """Upper ``alpha`` quantile of chi-square(df) by Wilson-Hilferty (about 2 % high for df 5-6 at 1e-4:
    the real false-alarm rate is a little below ``alpha``)."""
    z = float(torch.special.ndtri(torch.tensor(1.0 - alpha, dtype=torch.float64)))
    return df * (1.0 - 2.0 / (9 * df) + z * math.sqrt(2.0 / (9 * df))) ** 3


def test_draw_frequencies_match_the_weights():
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 10.0, 0.5, 7.5], dtype=torch.float64)
    counts = np.zeros(len(weights))
    epochs = 3000
    for epoch in range(epochs):
        idx = balanced_indices(weights, seed=11, epoch=epoch)
        assert len(idx) == len(weights)  # as many draws per epoch as clips
        counts += np.bincount(idx, minlength=len(weights))
    assert counts[4] == 0  # zero weight: never drawn
    keep = weights.numpy() > 0
    expected = weights.numpy()[keep] / weights.sum().item() * counts.sum()
    stat = float(((counts[keep] - expected) ** 2 / expected).sum())
    assert stat < chi2_critical(int(keep.sum()) - 1, ALPHA), stat
    # with replacement: some clip comes twice in an epoch
    assert any(len(set(balanced_indices(weights, seed=11, epoch=e))) < len(weights) for e in range(5))


def test_sampler_is_not_uniform():
    """The same test rejects uniform draws for these weights (so it has power)."""
    weights = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 7.5])
    rng = np.random.default_rng(0)
    counts = np.bincount(rng.integers(0, 6, 6 * 3000), minlength=6)
    expected = weights / weights.sum() * counts.sum()
    assert float(((counts - expected) ** 2 / expected).sum()) > chi2_critical(5, ALPHA)


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (7, 3), (5, 4)])
def test_processes_split_the_single_process_epoch(n, world):
    w = torch.rand(n, dtype=torch.float64) + 0.1
    single = balanced_indices(w, seed=3, epoch=2)
    parts = [balanced_indices(w, seed=3, epoch=2, rank=r, world=world) for r in range(world)]
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == math.ceil(n / world)
    padded = single + single[: len(parts[0]) * world - n]
    assert [padded[i] for i in range(len(padded))] == [parts[i % world][i // world] for i in range(len(padded))]
    assert balanced_indices(w, seed=3, epoch=2, rank=1, world=world) == parts[1]  # same epoch: same draws
    assert balanced_indices(w, seed=3, epoch=3) != single


def test_shuffled_epochs_are_distributed_sampler_order():
    from torch.utils.data import DistributedSampler

    s = DistributedSampler(range(9), num_replicas=2, rank=1, shuffle=True, seed=5)
    s.set_epoch(4)
    assert epoch_indices(9, None, shuffle=True, seed=5, epoch=4, rank=1, world=2) == list(s)
    assert epoch_indices(5, None, shuffle=False, seed=0, epoch=0) == [0, 1, 2, 3, 4]


def test_weight_file_is_read_and_checked(tmp_path):
    train = str(tmp_path / "tr.json")
    assert weight_csv_path(train) == str(tmp_path / "tr_weight.csv")
    with pytest.raises(ValueError, match="tr_weight.csv.*not found"):
        load_sample_weights(train, 3)
    np.savetxt(tmp_path / "tr_weight.csv", [0.5, 1.5, 2.0], delimiter=",")  # the reference's layout
    assert load_sample_weights(train, 3).tolist() == [0.5, 1.5, 2.0]
    with pytest.raises(ValueError, match="holds 3 weights.*4 clips"):
        load_sample_weights(train, 4)
    (tmp_path / "tr_weight.csv").write_text("1,-2,3\n")
    with pytest.raises(ValueError, match=">= 0"):
        load_sample_weights(train, 3)
    with pytest.raises(ValueError, match="end in .json"):
        weight_csv_path(str(tmp_path / "tr.txt"))


def test_training_loader_draws_the_balanced_epoch(tmp_path):
    from ssast_fast.data.synth import make_tiny_dataset
    from ssast_fast.data import LabelMap
    from ssast_fast.train.build import build_data, make_loader
    from ssast_fast.train.distributed import DistInfo

    d = make_tiny_dataset(tmp_path, n_clips=6, n_class=2, seconds=0.1)
    np.savetxt(d["train"][:-5] + "_weight.csv", [1, 0, 0, 0, 0, 5], delimiter=",")
    args = Namespace(sample_rate=16000, num_mel_bins=128, target_length=16, dataset_mean=0.0, dataset_std=1.0,
                     freqm=0, timem=0, mixup=0.0, noise=False, skip_bad_audio=False, fbank_in_workers=False, seed=2,
                     num_workers=0, data_train=d["train"], data_val=d["val"], bal="bal", device="cpu")
    train, _, _, _ = build_data(args, DistInfo(), LabelMap({}, []))
    loader = make_loader(train, args, DistInfo(), train=True, epoch=1, batch_size=2)
    seen = torch.cat([b["index"] for b in loader]).tolist()
    assert seen == balanced_indices(train.sample_weights, seed=2, epoch=1)[:6] and set(seen) <= {0, 5}
    assert json.load(open(d["train"]))["data"]  # the JSON itself is untouched
