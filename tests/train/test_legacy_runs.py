"""Run folders written by earlier code still load, resume and evaluate (made by
``legacy/make_legacy_runs.py``): ``legacy_runs_v1.tar.xz`` (checkpoint format 1, commit f89caa0) and
``legacy_runs_v2.tar.xz`` (format 2, commit 7b3cbe2: the code before the training package was split
into one module per concern with typed configs). A run of today's code writes the config.json and
summary.json keys those runs wrote."""
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

LEGACY = os.path.join(os.path.dirname(__file__), "legacy")
TINY = ["--model_size", "tiny", "--target_length", "32", "--fshape", "16", "--tshape", "16", "-w", "0",
        "--no-progress", "-b", "2", "--n-print-steps", "1", "--seed", "3"]


def _unpack(tmp_path, version: int):
    with tarfile.open(os.path.join(LEGACY, f"legacy_runs_v{version}.tar.xz")) as tar:
        tar.extractall(tmp_path, filter="data")
    # the clips the runs were trained on (make_tiny_dataset is a function of its seed)
    d = make_tiny_dataset(tmp_path / "ds", n_clips=4, n_class=2, seconds=0.4, seed=0)
    return tmp_path, d


@pytest.fixture
def legacy(tmp_path):
    return _unpack(tmp_path, 1)


@pytest.fixture
def legacy_v2(tmp_path):
    return _unpack(tmp_path, 2)


PRETRAIN = ["--mask_patch", "6", "--epoch_iter", "2", "--warmup-steps", "2"]
FINETUNE = ["--n_class", "2", "--fstride", "16", "--tstride", "16", "--warmup", "False", "--freqm", "8", "--timem",
            "8", "--loss", "CE", "--metrics", "acc", "--lrscheduler_start", "1", "--lrscheduler_step", "1",
            "--lrscheduler_decay", "0.5"]


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
    assert main(["finetune", "--data-train", d["train"], "--data-val", d["val"], "--label-csv", d["labels"], *TINY,
                 *FINETUNE, "--n-epochs", "2", "--exp-dir", exp,
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
    assert main(["pretrain", "--data-train", d["train"], "--data-val", d["val"], *TINY, *PRETRAIN, "--n-epochs", "2",
                 "--exp-dir", exp, "--resume"]) == 0
    rows = [r for r in _rows(os.path.join(exp, "metrics.jsonl")) if r["split"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in rows)
    out = str(root / "emb")
    assert main(["embed", "--checkpoint", os.path.join(root, "pretrain", "models", "best_audio_model.pth"),
                 "--data", d["val"], "--out", out, *TINY[:8], "--no-progress"]) == 0
    assert np.load(os.path.join(out, "embeddings.npy")).shape == (2, 192)


def _same_metrics(got_path, want_path, names) -> None:
    got = {(r["split"], r["step"]): r for r in _rows(got_path)}
    want = {(r["split"], r["step"]): r for r in _rows(want_path)}
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert set(got[key]) == set(row), key
        for m in names:
            if m in row:
                assert got[key][m] == pytest.approx(row[m], rel=1e-6, abs=1e-9), (key, m)


def _keys(path) -> list[str]:
    return list(json.load(open(path)))


def test_v2_pretraining_resumes_to_the_same_metrics_and_embeds(legacy_v2):
    root, d = legacy_v2
    exp = str(root / "pretrain")
    assert torch.load(os.path.join(exp, "checkpoints", "last.pt"), weights_only=True)["format"] == "ssast_fast.training/2"
    assert main(["pretrain", "--data-train", d["train"], "--data-val", d["val"], *TINY, *PRETRAIN, "--n-epochs", "2",
                 "--exp-dir", exp, "--resume"]) == 0
    _same_metrics(os.path.join(exp, "metrics.jsonl"), root / "pretrain_2ep_metrics.jsonl",
                  ("loss", "acc", "nce", "mse", "lr", "mask_patch"))
    result = np.loadtxt(os.path.join(exp, "result.csv"), delimiter=",", ndmin=2)
    assert result.shape == (2, 5) and np.isfinite(result).all()
    out = str(root / "emb")
    assert main(["embed", "--checkpoint", os.path.join(exp, "checkpoints", "best.pt"), "--data", d["val"], "--out", out,
                 "-w", "0", "--no-progress"]) == 0
    assert np.load(os.path.join(out, "embeddings.npy")).shape == (2, 192)


def test_v2_finetuning_resumes_to_the_same_metrics_and_evaluates(legacy_v2):
    root, d = legacy_v2
    exp = str(root / "finetune")
    assert main(["finetune", "--data-train", d["train"], "--data-val", d["val"], "--label-csv", d["labels"], *TINY,
                 *FINETUNE, "--n-epochs", "2", "--exp-dir", exp, "--resume"]) == 0
    _same_metrics(os.path.join(exp, "metrics.jsonl"), root / "finetune_2ep_metrics.jsonl", ("loss", "lr", "acc", "mAP"))
    assert np.loadtxt(os.path.join(exp, "result.csv"), delimiter=",", ndmin=2).shape == (2, 10)
    for name in ("best.pt", "last.pt"):
        ev = str(root / f"ev_{name}")
        assert main(["eval", "--checkpoint", os.path.join(exp, "checkpoints", name), "--data-eval", d["val"],
                     "--label-csv", d["labels"], "--exp-dir", ev, "-w", "0", "--no-progress"]) == 0
        assert 0.0 <= json.load(open(os.path.join(ev, "eval_metrics.json")))["acc"] <= 1.0


def test_v2_config_and_summary_keys_are_what_runs_write_today(legacy_v2, tmp_path):
    root, d = legacy_v2
    pre, ft = str(tmp_path / "pre"), str(tmp_path / "ft")
    assert main(["pretrain", "--data-train", d["train"], "--data-val", d["val"], *TINY, *PRETRAIN, "--n-epochs", "1",
                 "--exp-dir", pre]) == 0
    assert main(["finetune", "--data-train", d["train"], "--data-val", d["val"], "--label-csv", d["labels"], *TINY,
                 *FINETUNE, "--n-epochs", "1", "--exp-dir", ft, "--pretrained_mdl_path",
                 os.path.join(pre, "models", "audio_model.pth")]) == 0
    paths = ("data_train", "data_val", "label_csv", "exp_dir", "pretrained_mdl_path")
    for stage, new in (("pretrain", pre), ("finetune", ft)):
        old_cfg, new_cfg = (json.load(open(os.path.join(p, "config.json"))) for p in (root / stage, new))
        assert sorted(new_cfg) == sorted(old_cfg), stage
        assert {k: v for k, v in new_cfg.items() if k not in paths} == {k: v for k, v in old_cfg.items()
                                                                         if k not in paths}, stage
        assert _keys(os.path.join(new, "summary.json")) == _keys(root / stage / "summary.json"), stage
        for f in ("train_log.csv", "val_log.csv"):  # the same columns in the same order
            assert open(os.path.join(new, f)).readline() == open(root / stage / f).readline(), (stage, f)
        width = [np.loadtxt(p, delimiter=",", ndmin=2).shape[1] for p in (os.path.join(new, "result.csv"),
                                                                          root / stage / "result.csv")]
        assert width[0] == width[1], stage
