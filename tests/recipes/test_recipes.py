"""The official recipes through ``ssast-fast run``: each stored run.py line (``*.txt`` here) with
``python -W ignore ../run.py`` replaced by ``ssast-fast run`` and nothing else changed, on generated
clips in the reference's JSON / CSV format, shrunk only by flags appended at the end.

The lines run from a copy of their recipe folder (``src/pretrain``, ``src/finetune/esc50``, ...)
in a temporary directory; the absolute data paths of the authors' cluster (``/data/sls/...``) are
mapped into it. The pretrained models the fine-tuning lines name (``SSAST-Base-*-400.pth``) are
generated ``tiny`` pretraining models with the recipe's patch shape (``--model_size tiny`` is
appended to every line).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from ssast_fast.cli import main

HERE = os.path.dirname(os.path.abspath(__file__))
SHRINK = ["--model_size", "tiny", "--batch-size", "1", "--num-workers", "0"]
CLUSTER = "/data/sls/"


def recipe(name: str) -> tuple[str, list[str]]:
    """(folder the script runs from, its run.py lines) of ``<name>.txt``."""
    with open(os.path.join(HERE, f"{name}.txt")) as f:
        lines = f.read().splitlines()
    folder = re.search(r"run from (\S+);", lines[0]).group(1)
    return folder, [ln for ln in lines[1:] if ln.strip()]


def drop_in(line: str) -> list[str]:
    """The arguments of ``ssast-fast run`` for a recipe line: ``python -W ignore ../run.py`` (or
    ``../../run.py``) becomes ``ssast-fast run``; leading ``VAR=value`` words set the environment."""
    tokens = shlex.split(re.sub(r"python -W ignore (\.\./)+run\.py", "ssast-fast run", line))
    while re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):
        tokens.pop(0)
    assert tokens[:2] == ["ssast-fast", "run"], line
    return tokens[2:]


def flag(argv: list[str], name: str, default=None):
    """The value of the last ``name`` in ``argv`` (argparse: the last one wins)."""
    hits = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]
    return hits[-1] if hits else default


class RecipeTree:
    """A recipe folder under ``root`` with the files a line reads, generated."""

    def __init__(self, root, folder: str) -> None:
        self.root = str(root)
        self.cwd = os.path.join(self.root, "ssast", folder)
        os.makedirs(self.cwd, exist_ok=True)

    def local(self, argv: list[str]) -> list[str]:
        """``argv`` with the cluster's absolute paths mapped under the tree."""
        return [os.path.join(self.root, "cluster", a[len(CLUSTER):]) if a.startswith(CLUSTER) else a for a in argv]

    def path(self, p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(self.cwd, p)

    def populate(self, argv: list[str], n_train: int = 1, n_val: int = 2) -> None:
        n_class = int(flag(argv, "--n_class", 527))
        mids = [f"/m/c{k}" for k in range(n_class)]
        if flag(argv, "--label-csv"):
            label_csv = self.path(flag(argv, "--label-csv"))
            os.makedirs(os.path.dirname(label_csv), exist_ok=True)
            with open(label_csv, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["index", "mid", "display_name"])
                w.writerows([k, m, f"class {k}"] for k, m in enumerate(mids))
        for name, n in (("--data-train", n_train), ("--data-val", n_val), ("--data-eval", n_val)):
            if flag(argv, name):
                self.write_split(self.path(flag(argv, name)), n, mids)
        if flag(argv, "--bal") == "bal":
            json_path = self.path(flag(argv, "--data-train"))
            np.savetxt(json_path[:-5] + "_weight.csv", np.arange(1, n_train + 1, dtype=float), delimiter=",")
        if flag(argv, "--pretrained_mdl_path") and not os.path.exists(self.path(flag(argv, "--pretrained_mdl_path"))):
            self.write_pretrained(self.path(flag(argv, "--pretrained_mdl_path")), int(flag(argv, "--fshape")),
                                  int(flag(argv, "--tshape")))

    @staticmethod
    def write_split(json_path: str, n: int, mids: list[str]) -> None:
        os.makedirs(os.path.dirname(json_path), exist_ok=True)
        stem = os.path.splitext(json_path)[0]
        rng = np.random.default_rng(len(json_path))
        entries = []
        for i in range(n):
            k = i % len(mids)
            t = np.arange(8000) / 16000
            x = 0.5 * np.sin(2 * np.pi * 200 * (k % 20 + 1) * t) + 0.02 * rng.standard_normal(t.shape)
            wav = f"{stem}_{i}.wav"
            sf.write(wav, x.astype(np.float32), 16000, subtype="PCM_16")
            entries.append({"wav": wav, "labels": ",".join(mids[j % len(mids)] for j in (k, k + 3))})
        with open(json_path, "w") as f:
            json.dump({"data": entries}, f, indent=1)

    @staticmethod
    def write_pretrained(path: str, fshape: int, tshape: int) -> None:
        from ssast_fast import ASTModel
        from ssast_fast.checkpoint import save_reference

        torch.manual_seed(0)
        save_reference(ASTModel(fshape=fshape, tshape=tshape, fstride=fshape, tstride=tshape, input_fdim=128,
                                input_tdim=1024, model_size="tiny", pretrain_stage=True), path)

    def run(self, argv: list[str]) -> int:
        old = os.getcwd()
        os.chdir(self.cwd)
        try:
            return main(["run", *argv])
        finally:
            os.chdir(old)


def prepared(tmp_path, name: str, extra: list[str], line_no: int = 0) -> tuple[RecipeTree, list[str]]:
    folder, lines = recipe(name)
    tree = RecipeTree(tmp_path, folder)
    argv = tree.local(drop_in(lines[line_no])) + extra
    tree.populate(argv)
    return tree, argv


def test_every_official_line_is_stored_and_parses():
    from ssast_fast.cli import build_parser

    names = ["run_mask_patch", "run_mask_frame", "run_mask_patch_tiny", "run_mask_frame_tiny", "run_esc_patch",
             "run_esc_frame", "run_sc", "run_as_balanced", "run_as_full"]
    counts = {n: len(recipe(n)[1]) for n in names}
    assert counts == {**dict.fromkeys(names, 1), "run_esc_patch": 5, "run_esc_frame": 5}
    parser = build_parser()
    for n in names:
        for line in recipe(n)[1]:
            args = parser.parse_args(["run", *drop_in(line)])
            assert args.exp_dir.startswith("./exp/") and args.dataset_mean is not None
    # the ESC-50 frame script's `--pretrain False` abbreviates --pretrained_mdl_path; the later flag wins
    args = parser.parse_args(["run", *drop_in(recipe("run_esc_frame")[1][0])])
    assert args.pretrained_mdl_path == ".//SSAST-Base-Frame-400.pth"


@pytest.mark.parametrize("name,frame", [("run_mask_patch", False), ("run_mask_frame", True),
                                        ("run_mask_patch_tiny", False), ("run_mask_frame_tiny", True)])
def test_pretraining_recipe(tmp_path, name, frame):
    tree, argv = prepared(tmp_path, name, SHRINK + ["--n-epochs", "1", "--epoch_iter", "1"])
    assert tree.run(argv) == 0
    exp = tree.path(flag(argv, "--exp-dir"))
    summary = json.load(open(os.path.join(exp, "summary.json")))
    assert summary["steps"] == 1 and summary["task"] == "pretrain_joint"
    result = np.loadtxt(os.path.join(exp, "result.csv"), delimiter=",", ndmin=2)
    assert result.shape == (1, 5) and np.isfinite(result).all()
    assert result[0, 4] == 0.0  # the warm-up sets lr = step / 1000 x lr every 50 steps: 0 until step 50
    assert os.path.exists(os.path.join(exp, "models", "audio_model.2.pth"))  # evaluation 1 -> file 2, as the reference
    cfg = json.load(open(os.path.join(exp, "config.json")))
    assert (cfg["fshape"], cfg["tshape"], cfg["mask_patch"], cfg["bal"]) == ((128, 2) if frame else (16, 16)) + (400, "none")


def _esc_fold(tmp_path, name: str, fold: int, epochs: int) -> str:
    tree, argv = prepared(tmp_path, name, SHRINK + ["--n-epochs", str(epochs)], line_no=fold - 1)
    assert tree.run(argv) == 0
    return tree.path(flag(argv, "--exp-dir"))


@pytest.mark.parametrize("name", ["run_esc_patch", "run_esc_frame"])
def test_esc50_recipe_all_folds_and_the_result_summary(tmp_path, name):
    epochs = 1  # multi-epoch result.csv: tests/train/test_reference_outputs.py
    dirs = [_esc_fold(tmp_path, name, fold, epochs) for fold in range(1, 6)]
    base = os.path.dirname(dirs[0])
    assert [os.path.basename(d) for d in dirs] == [f"fold{k}" for k in range(1, 6)]
    # what get_esc_result.py does: average fold*/result.csv, pick the best epoch on column 0 (with one
    # epoch per fold it would fail on the 1-D table, as the reference's; read here as 2-D)
    results = [np.loadtxt(os.path.join(base, f"fold{k}", "result.csv"), delimiter=",", ndmin=2) for k in range(1, 6)]
    assert all(r.shape == (epochs, 10) for r in results)
    mean = sum(results) / 5
    best = int(np.argmax(mean[:, 0]))
    assert 0.0 <= mean[best, 0] <= 1.0 and np.isfinite(np.delete(mean, 4, axis=1)).all()  # d-prime may be inf
    cfg = json.load(open(os.path.join(dirs[0], "config.json")))
    assert (cfg["loss"], cfg["metrics"], cfg["noise"], cfg["warmup"]) == ("CE", "acc", True, False)
    assert cfg["pretrained_mdl_path"].endswith("-400.pth")
    assert (results[0][:, 9] == 1e-4).all()  # lr: the decay starts at epoch 6


def test_speechcommands_recipe(tmp_path):
    tree, argv = prepared(tmp_path, "run_sc", SHRINK + ["--n-epochs", "1"])
    assert tree.run(argv) == 0
    exp = tree.path(flag(argv, "--exp-dir"))
    ev = np.loadtxt(os.path.join(exp, "eval_result.csv"))
    assert ev.shape == (4,) and np.isfinite(ev).all()  # val acc, val mAUC, eval acc, eval mAUC
    result = np.loadtxt(os.path.join(exp, "result.csv"), delimiter=",")
    assert result.shape == (10,) and result[9] == 0.0  # warm-up: the first epoch's lr is step/1000 x lr


@pytest.mark.parametrize("name", ["run_as_balanced", "run_as_full"])
def test_audioset_recipe_with_weight_averaging(tmp_path, name):
    # 5 or 25 epochs shrunk to 2, so the averaged window (6..25) is moved into them
    tree, argv = prepared(tmp_path, name, SHRINK + ["--n-epochs", "2", "--wa_start", "1", "--wa_end", "2"])
    assert flag(argv, "--bal") == ("bal" if name == "run_as_full" else "none")
    assert tree.run(argv) == 0
    exp = tree.path(flag(argv, "--exp-dir"))
    wa = np.loadtxt(os.path.join(exp, "wa_result.csv"))
    assert wa.shape == (5,) and np.isfinite(wa[:4]).all()  # mAP, mAUC, precision, recall, d-prime
    models = os.path.join(exp, "models")
    assert os.path.exists(os.path.join(models, "audio_model_wa.pth"))
    assert os.path.exists(os.path.join(models, "audio_model.1.pth"))          # wa_start is kept
    assert not os.path.exists(os.path.join(models, "audio_model.2.pth"))      # --save_model False: removed
    assert np.loadtxt(os.path.join(exp, "result.csv"), delimiter=",").shape == (2, 10)


def test_audioset_window_past_the_last_epoch_is_refused_before_training(tmp_path, capsys):
    tree, argv = prepared(tmp_path, "run_as_full", SHRINK + ["--n-epochs", "2"])
    assert tree.run(argv) == 2
    err = capsys.readouterr().err
    assert "--wa_start 6" in err and "--wa_end 25" in err and "--n-epochs" in err
    assert not os.path.exists(tree.path(flag(argv, "--exp-dir")))


def test_console_script_runs_a_recipe_line(tmp_path):
    """The installed ``ssast-fast`` entry point itself, on the smallest line (Speech Commands)."""
    tree, argv = prepared(tmp_path, "run_sc", SHRINK + ["--n-epochs", "1"])
    exe = os.path.join(os.path.dirname(sys.executable), "ssast-fast")
    cmd = [exe, "run"] if os.path.exists(exe) else [sys.executable, "-m", "ssast_fast", "run"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd + argv, cwd=tree.cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "fine-tuning finished" in r.stdout
    assert "finetune: step 1/" in r.stderr  # progress lines outside a terminal
