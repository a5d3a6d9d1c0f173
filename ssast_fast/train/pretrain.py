"""Self-supervised pretraining (reference recipe, SPEC.md section 4): the pretraining :class:`Stage`
of the training loop (:mod:`~ssast_fast.train.loop`).

Adam(lr, weight_decay 5e-7, betas (0.95, 0.999)); warm-up: while step <= 1000 and step % 50 == 0
the lr is set to step / 1000 * lr before the step (so the very first step runs at lr 0, as in the
reference; ``warmup`` is ignored, as there); every ``epoch_iter`` steps: validation with 400
masked patches, ReduceLROnPlateau (mode max on masked accuracy -- on -mse for pretrain_mpg --,
factor 0.5, patience lr_patience), checkpoints, a row of ``result.csv`` (the reference's columns)
and, with ``epoch_models``, ``models/audio_model.<evaluation + 1>.pth``.
Loss: pretrain_joint nce + 10 mse; pretrain_mpc nce; pretrain_mpg mse.

Deviation: the reference keeps as "best" the model with the best *training-batch* accuracy at the
evaluation step; here best is the best validation masked accuracy (or lowest validation mse).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ssast_fast.data import LabelMap
from ssast_fast.train.build import autocast, build_pretrain_model, clip_input, load_model_weights, load_weights, \
    make_loader, model_input
from ssast_fast.train.config import VAL_MASK_PATCH, PretrainConfig
from ssast_fast.train.distributed import all_reduce_mean
from ssast_fast.train.logs import plot_mask
from ssast_fast.train.loop import train
from ssast_fast.train.schedules import plateau
from ssast_fast.train.stage import Evaluation, Stage


def run_task(net, x: torch.Tensor, config: PretrainConfig, mask_patch: int, cluster: bool):
    """-> (loss, acc, nce, mse) for the configured pretraining task (missing terms are NaN)."""
    nan = torch.tensor(float("nan"))
    if config.task == "pretrain_joint":
        acc, nce, mse = net(x, "pretrain_joint", mask_patch=mask_patch, cluster=cluster,
                            shared_mask=config.shared_mask)
        return nce + 10 * mse, acc, nce, mse
    if config.task == "pretrain_mpc":
        acc, nce = net(x, "pretrain_mpc", mask_patch=mask_patch, cluster=cluster)
        return nce, acc, nce, nan
    mse = net(x, "pretrain_mpg", mask_patch=mask_patch, cluster=cluster)
    return mse, nan, nan, mse


def result_row(task: str, window: list[float], val: dict, lr: float) -> list[float]:
    """A row of the reference's pretraining ``result.csv``: training masked accuracy and loss averaged
    since the last evaluation, validation accuracy and nce, lr. As the reference, pretrain_mpg puts
    its mse in both accuracy columns and pretrain_joint its validation mse in the nce column."""
    loss, acc = window
    if task == "pretrain_mpg":
        return [loss, loss, val["mse"], val["mse"], lr]
    return [acc, loss, val["acc"], val["mse"] if task == "pretrain_joint" else val["nce"], lr]


class Pretraining(Stage):
    """Masked patch prediction: steps of the configured task, validation every ``epoch_iter`` steps."""

    name, title = "pretrain", "pretraining"
    terms = ("loss", "acc", "nce", "mse")
    window_terms, window_keys, best_key = 2, ("window", "window_n"), "best_step"
    train_columns = ("split", "step", "epoch", "lr", "clips_per_s", "skipped", "loss", "acc", "nce", "mse")
    logs = ", mask_visualization.png"

    def __init__(self, config: PretrainConfig) -> None:
        super().__init__(config)
        self.init: dict | None = None
        self.curves = [("train", "loss"), ("train", "acc" if config.task != "pretrain_mpg" else "mse"),
                       ("val", "acc"), ("val", "mse"), ("train", "lr")]

    def read_files(self) -> None:
        """``pretrained_mdl_path`` in pretraining (ours; the reference ignores it): initial weights."""
        if self.config.pretrained_mdl_path:
            self.init = load_weights(self.config.pretrained_mdl_path)

    def labels(self) -> LabelMap:
        return LabelMap({}, [])  # labels unused

    def build_model(self, ck: dict | None):
        model = build_pretrain_model(self.config)
        if ck is not None:
            model.load_state_dict(ck["model"])
        elif self.init is not None:
            load_model_weights(model, self.init, self.config.pretrained_mdl_path)
        self.cluster = model.cluster  # frame masking when patches span all bins
        self.val_mask = min(VAL_MASK_PATCH, model.max_mask_patch())
        return model

    def optimizer(self, model):
        return torch.optim.Adam(model.parameters(), self.config.lr, weight_decay=5e-7, betas=(0.95, 0.999))

    def scheduler(self, optimizer):
        return plateau(optimizer, self.config.lr_patience)

    def step(self, run, x, batch):
        with autocast(self.config, run.info.device):
            loss, acc, nce, mse = run_task(run.net, x, self.config, self.config.mask_patch, self.cluster)
        return loss, torch.stack([loss, acc, nce, mse])

    def evaluation_due(self, step: int) -> bool:
        return step % self.config.epoch_iter == 0

    @torch.no_grad()
    def evaluate(self, run, window, lr) -> Evaluation:
        """Mean masked accuracy / nce / mse over the validation set (this rank), averaged over ranks."""
        cfg, info, net = self.config, run.info, run.net
        loader = make_loader(run.val_ds, cfg, info, train=False, epoch=0, batch_size=cfg.batch_size * 2)
        net.eval()
        values = []
        for batch in run.prog.wrap(loader, len(loader), "validating"):
            x = model_input(batch, run.val_frontend, info.device, noise=False)
            with autocast(cfg, info.device):
                values.append([float(v) for v in run_task(net, x, cfg, self.val_mask, self.cluster)[1:]])
        net.train()
        means = [float(np.mean(v)) for v in zip(*values)] if values else [float("nan")] * 3
        val = dict(zip(("acc", "nce", "mse"), all_reduce_mean(means, info)))
        metric = -val["mse"] if cfg.task == "pretrain_mpg" else val["acc"]
        return Evaluation(metric=metric, plateau=metric, row={"mask_patch": self.val_mask, **val},
                          result=result_row(cfg.task, window, val, lr), last=val)

    def best_position(self, step: int, epoch: int) -> int:
        return step

    def epoch_model(self, step: int, epochs_done: int) -> int | None:
        # the reference's audio_model.<evaluation + 1>.pth
        return step // self.config.epoch_iter + 1 if self.config.epoch_models else None

    def summary(self, run) -> dict:
        return {"best_val": run.best, "best_step": run.best_at}

    def plots(self, run) -> None:
        """mask_visualization.png from the first validation clip."""
        x = clip_input(run.val_ds[0], run.val_frontend, run.info.device)
        plot_mask(run.model, x, self.config.mask_patch, os.path.join(self.config.exp_dir, "mask_visualization.png"))

    def summary_lines(self, run, summary: dict) -> dict:
        what = "-mse" if self.config.task == "pretrain_mpg" else "masked acc"
        return {f"best val {what}": f"{run.best:.4f} at step {run.best_at}"}


def pretrain(config: PretrainConfig) -> dict:
    """Run (or resume) pretraining -> summary dict (also ``<exp_dir>/summary.json``)."""
    return train(config, Pretraining(config))
