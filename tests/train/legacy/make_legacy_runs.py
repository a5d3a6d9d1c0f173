"""Write the legacy run folders of ``legacy_runs_v<N>.tar.xz`` (N: the checkpoint format the package writes).

Run with the package of the commit that wrote the format on the path::

    git worktree add /tmp/ssast_old <commit>
    PYTHONPATH=/tmp/ssast_old python tests/train/legacy/make_legacy_runs.py OUT_DIR

``legacy_runs_v1.tar.xz``: commit f89caa0 (the last one writing ``ssast_fast.training/1``);
``legacy_runs_v2.tar.xz``: commit 7b3cbe2 (``ssast_fast.training/2``, the code before the training
package was split into one module per concern: ``train/common.py``, argparse namespaces).

It trains the ``tiny`` model on 32 frames of ``make_tiny_dataset(seed=0)`` clips, starting from
all-zero weights so that the files compress to a few hundred KB (the format, not the values, is
what the fixture keeps): ``pretrain/`` (1 epoch of ``pretrain_joint``) and ``finetune/`` (1 epoch
from the zero pretraining model), then ``finetune_2ep_metrics.jsonl`` (and, from format 2 on,
``pretrain_2ep_metrics.jsonl``): the metrics of the same runs taken to 2 epochs, against which a
resumed run is compared. Then::

    tar -C OUT_DIR --sort=name --mtime=2020-01-01 --owner=root --group=root -cJf legacy_runs_vN.tar.xz .
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import torch

TINY = ["--model_size", "tiny", "--target_length", "32", "--fshape", "16", "--tshape", "16", "-w", "0",
        "--no-progress", "-b", "2", "--n-print-steps", "1", "--seed", "3"]


def _zero(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.is_floating_point():
                p.zero_()
    return model


def main(out: str) -> None:
    from ssast_fast import checkpoint
    from ssast_fast.checkpoint import save_reference
    from ssast_fast.cli import main as cli
    from ssast_fast.data.synth import make_tiny_dataset
    from ssast_fast.train import common

    fmt = getattr(checkpoint, "TRAINING_FORMAT", "ssast_fast.training/1")
    work = os.path.join(out, "_work")
    d = make_tiny_dataset(os.path.join(work, "ds"), n_clips=4, n_class=2, seconds=0.4, seed=0)
    build = common.build_pretrain_model
    common.build_pretrain_model = lambda args: _zero(build(args))
    pre = ["pretrain", "--data-train", d["train"], "--data-val", d["val"], *TINY, "--mask_patch", "6",
           "--epoch_iter", "2", "--warmup-steps", "2"]
    try:
        assert cli(pre + ["--n-epochs", "1", "--exp-dir", os.path.join(out, "pretrain")]) == 0
        if fmt != "ssast_fast.training/1":
            assert cli(pre + ["--n-epochs", "2", "--exp-dir", os.path.join(work, "pretrain_2ep")]) == 0
            shutil.copy(os.path.join(work, "pretrain_2ep", "metrics.jsonl"),
                        os.path.join(out, "pretrain_2ep_metrics.jsonl"))
    finally:
        common.build_pretrain_model = build
    zero = os.path.join(work, "zero_pretrained.pth")
    save_reference(_zero(build(common.Namespace(fshape=16, tshape=16, num_mel_bins=128, target_length=32,
                                                model_size="tiny"))), zero)
    ft = ["finetune", "--data-train", d["train"], "--data-val", d["val"], "--label-csv", d["labels"],
          "--n_class", "2", "--pretrained_mdl_path", zero, *TINY, "--fstride", "16", "--tstride", "16",
          "--warmup", "False", "--freqm", "8", "--timem", "8", "--loss", "CE", "--metrics", "acc",
          "--lrscheduler_start", "1", "--lrscheduler_step", "1", "--lrscheduler_decay", "0.5"]
    assert cli(ft + ["--n-epochs", "1", "--exp-dir", os.path.join(out, "finetune")]) == 0
    assert cli(ft + ["--n-epochs", "2", "--exp-dir", os.path.join(work, "finetune_2ep")]) == 0
    shutil.copy(os.path.join(work, "finetune_2ep", "metrics.jsonl"), os.path.join(out, "finetune_2ep_metrics.jsonl"))
    shutil.rmtree(work)
    for root, _, files in os.walk(out):
        for f in files:
            if f.endswith(".png"):
                os.remove(os.path.join(root, f))
    with open(os.path.join(out, "MADE_WITH.json"), "w") as f:
        json.dump({"torch": torch.__version__, "format": fmt}, f)


if __name__ == "__main__":
    main(sys.argv[1])
