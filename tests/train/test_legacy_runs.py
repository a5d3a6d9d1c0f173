"""Run folders written by the previous checkpoint format (``legacy/legacy_runs_v1.tar.xz``, made by
``legacy/make_legacy_runs.py`` with commit f89caa0) still load, resume and evaluate."""
import json
import os
import random
import tarfile

import numpy as np
import pytest
import torch

from ssast_fast.checkpoint import load_training_checkpoint, restore_rng_state
from ssast_fast.cli import main
from ssast_fast.data.synth import make_tiny_dataset

ARCHIVE = os.path.join(os.path.dirname(__file__), "legacy", "legacy_runs_v1.tar.xz")
TINY = ["--model_size", "tiny", "--target_length", "32", "--fshape", "16", "--tshape", "16", "-w", "0",
        "--no-progress", "-b", "2", "--n-print-steps", "1", "--seed", "3"]


@pytest.fixture
def legacy(tmp_path):
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    # the clips the runs were trained on (make_tiny_dataset is a function of its seed)
    d = make_tiny_dataset(tmp_path / "ds", n_clips=4, n_class=2, seconds=0.4, seed=0)
    return tmp_path, d


def _rows(path):
    return [json.loads(x) for x in open(path) if x.strip()]


def test_legacy_checkpoint_restores_its_rng_streams(legacy):
    root, _ = legacy
    ck = load_training_checkpoint(root / "finetune" / "checkpoints" / "last.pt")
    assert ck["format"] == "ssast_fast.training/1" and ck["epoch"] == 1
    restore_rng_state(ck["rng"])
    assert random.getstate() == ck["rng"]["python"]
    kind, key, pos, has_gauss, cached = np.random.get_state()
    assert kind == ck["rng"]["numpy"][0] and np.array_equal(key, ck["rng"]["numpy"][1])
    assert (pos, has_gauss, cached) == tuple(ck["rng"]["numpy"][2:])
    assert torch.equal(torch.get_rng_state(), ck["rng"]["torch"])


def test_legacy_finetune_resumes_to_the_same_losses_and_evaluates(legacy):
    root, d = legacy
    exp = str(root / "finetune")
    assert main(["finetune", "--data-train", d["train"], "--data-val", d["val"], "--label-csv", d["labels"],
                 "--n_class", "2", *TINY, "--fstride", "16", "--tstride", "16", "--warmup", "False", "--freqm", "8",
                 "--timem", "8", "--loss", "CE", "--metrics", "acc", "--lrscheduler_start", "1", "--lrscheduler_step",
                 "1", "--lrscheduler_decay", "0.5", "--n-epochs", "2", "--exp-dir", exp,
                 "--resume", os.path.join(exp, "checkpoints", "last.pt")]) == 0
    got = {(r["split"], r["step"]): r for r in _rows(os.path.join(exp, "metrics.jsonl"))}
    want = {(r["split"], r["step"]): r for r in _rows(root / "finetune_2ep_metrics.jsonl")}
    assert got.keys() == want.keys()
    for key, row in want.items():
        for m in ("loss", "lr", "acc", "mAP"):
            if m in row:
                assert got[key][m] == pytest.approx(row[m], rel=1e-6, abs=1e-9), (key, m)
    ck = torch.load(os.path.join(exp, "checkpoints", "last.pt"), weights_only=True)  # now format 2
    assert ck["format"] == "ssast_fast.training/2" and ck["step"] == 4
    ev = str(root / "ev")
    assert main(["eval", "--checkpoint", os.path.join(exp, "checkpoints", "best.pt"), "--data-eval", d["val"],
                 "--label-csv", d["labels"], "--exp-dir", ev, "-w", "0", "--no-progress"]) == 0
    assert json.load(open(os.path.join(ev, "eval_metrics.json")))["acc"] == pytest.approx(0.5)


def test_legacy_pretraining_resumes_and_embeds(legacy):
    root, d = legacy
    exp = str(root / "pretrain")
    assert main(["pretrain", "--data-train", d["train"], "--data-val", d["val"], *TINY, "--mask_patch", "6",
                 "--epoch_iter", "2", "--n-epochs", "2", "--warmup-steps", "2", "--exp-dir", exp, "--resume"]) == 0
    rows = [r for r in _rows(os.path.join(exp, "metrics.jsonl")) if r["split"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in rows)
    out = str(root / "emb")
    assert main(["embed", "--checkpoint", os.path.join(root, "pretrain", "models", "best_audio_model.pth"),
                 "--data", d["val"], "--out", out, *TINY[:8], "--no-progress"]) == 0
    assert np.load(os.path.join(out, "embeddings.npy")).shape == (2, 192)
