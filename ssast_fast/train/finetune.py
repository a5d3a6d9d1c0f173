"""Supervised fine-tuning (reference recipe, SPEC.md section 4): the fine-tuning :class:`Stage` of
the training loop (:mod:`~ssast_fast.train.loop`) and weight averaging.

Adam with two groups (encoder at lr, ``mlp_head`` at lr * head_lr), weight_decay 5e-7, betas
(0.95, 0.999); optional warm-up (both groups, every 50 of the first 1000 steps, to step/1000 of
their base lr); MultiStepLR with milestones ``range(lrscheduler_start, 1000, lrscheduler_step)``
and gamma ``lrscheduler_decay`` (or, with ``adaptschedule``, ReduceLROnPlateau on mAP), stepped
once per epoch after validation; loss BCEWithLogits (multi-hot targets) or CrossEntropy on the
target's argmax. Validation every epoch: sigmoid scores -> mAP, mean AUC, d-prime, accuracy; the
best model by ``metrics`` is kept. As the reference, every epoch adds a row to ``result.csv``
(:func:`result_row`, with the cumulative ensemble of the epochs' scores) and may write
``models/audio_model.<epoch>.pth``; ``wa`` averages epochs wa_start..wa_end after training
(:func:`weight_average`, ``wa_result.csv``); ``data_eval`` is scored with the best model.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ssast_fast.checkpoint import load_reference, load_training_checkpoint, save_reference
from ssast_fast.train.build import autocast, build_dataset, build_finetune_model, label_map, load_weights, \
    model_from_weights
from ssast_fast.train.config import FinetuneConfig
from ssast_fast.train.distributed import DistInfo, all_gather_objects
from ssast_fast.train.evaluation import SUMMARY_KEYS, evaluate, loss_fn
from ssast_fast.train.loop import train
from ssast_fast.train.metrics import calculate_stats
from ssast_fast.train.schedules import epoch_decay, plateau
from ssast_fast.train.stage import Evaluation, Stage
from ssast_fast.train.state import Checkpointer

HEAD_PARAMS = ("mlp_head.",)


def param_groups(model: nn.Module, lr: float, head_lr: float) -> list[dict]:
    """[encoder group at lr, mlp_head group at lr * head_lr]."""
    head = [p for n, p in model.named_parameters() if n.startswith(HEAD_PARAMS)]
    base = [p for n, p in model.named_parameters() if not n.startswith(HEAD_PARAMS)]
    return [{"params": base, "lr": lr}, {"params": head, "lr": lr * head_lr}]


def result_row(stats: dict, cum: dict, metrics: str, train_loss: float, lr: float) -> list[float]:
    """A row of the reference's fine-tuning ``result.csv``: main metric (mAP or acc), mAUC,
    mid_precision, mid_recall, d_prime, training loss, validation loss (on sigmoid outputs),
    the main metric and mAUC of the cumulative ensemble (mean of the scores of epochs 1..this), lr."""
    return [stats[metrics], stats["mAUC"], stats["mid_precision"], stats["mid_recall"], stats["d_prime"],
            train_loss, stats["loss_sigmoid"], cum[metrics], cum["mAUC"], lr]


def average_epoch_models(ckpt: Checkpointer, start: int, end: int) -> dict[str, torch.Tensor]:
    """Mean of ``models/audio_model.<start..end>.pth``: summed in epoch order, then divided by the
    count (the reference's order of operations)."""
    total: dict[str, torch.Tensor] = {}
    for e in range(start, end + 1):
        sd = load_reference(ckpt.epoch_model_path(e))
        total = sd if not total else {k: total[k] + sd[k] for k in total}
    return {k: v / float(end - start + 1) for k, v in total.items()}


def weight_average(model: nn.Module, ckpt: Checkpointer, config: FinetuneConfig, info: DistInfo) -> str:
    """``wa``: load the mean of the per-epoch models ``wa_start..wa_end`` into ``model``, write it as
    ``models/audio_model_wa.pth``, then (``save_model`` False) delete the files of epochs
    wa_start+1..wa_end. A rerun after those files are gone reuses ``audio_model_wa.pth``. -> its path."""
    path = os.path.join(ckpt.models, "audio_model_wa.pth")
    window = [ckpt.epoch_model_path(e) for e in range(config.wa_start, config.wa_end + 1)]
    sd = None
    if info.is_main:
        missing = [p for p in window if not os.path.exists(p)]
        if not missing:
            sd = average_epoch_models(ckpt, config.wa_start, config.wa_end)
        elif os.path.exists(path):
            sd = load_reference(path)
        else:
            raise ValueError(f"--wa True: the per-epoch models {', '.join(missing)} are missing")
    model.load_state_dict(all_gather_objects(sd, info)[0])  # rank 0's copy to every rank
    if info.is_main:
        save_reference(model, path)
        if config.save_model is False:
            for p in window[1:]:
                if os.path.exists(p):
                    os.remove(p)
    return path


def _kept(stats: dict) -> dict:
    return {k: stats[k] for k in SUMMARY_KEYS}


def _fmt(stats: dict) -> str:
    return ", ".join(f"{k} {x:.4f}" for k, x in stats.items())


class Finetuning(Stage):
    """Classification: steps on labeled clips, validation at the end of every epoch."""

    name, title = "finetune", "fine-tuning"
    terms = ("loss",)
    window_terms, window_keys, best_key = 1, ("epoch_loss", "epoch_n"), "best_epoch"
    train_columns = ("split", "step", "epoch", "loss", "lr", "head_lr", "clips_per_s", "skipped")
    evaluates_per_epoch = True
    logs = ""

    def __init__(self, config: FinetuneConfig) -> None:
        super().__init__(config)
        self.warmup = config.warmup
        self.result_rows = config.n_epochs
        self.curves = [("train", "loss"), ("val", "loss"), ("val", config.metrics), ("val", "mAUC"), ("train", "lr")]
        self.crit = loss_fn(config.loss)
        self.pretrained: dict | None = None
        self.cum_scores: torch.Tensor | None = None  # sum of the epochs' validation scores

    def read_files(self) -> None:
        if self.config.pretrained_mdl_path:
            self.pretrained = load_weights(self.config.pretrained_mdl_path)

    def labels(self):
        labels = label_map(self.config)
        if len(labels) != self.config.n_class:
            raise ValueError(f"--label-csv lists {len(labels)} classes but --n_class is {self.config.n_class}")
        return labels

    def build_model(self, ck: dict | None):
        if ck is not None:
            return model_from_weights(ck["model"], self.config)
        return build_finetune_model(self.config, self.pretrained)

    def optimizer(self, model):
        cfg = self.config
        return torch.optim.Adam(param_groups(model, cfg.lr, cfg.head_lr), weight_decay=5e-7, betas=(0.95, 0.999))

    def scheduler(self, optimizer):
        cfg = self.config
        if cfg.adaptschedule:
            return plateau(optimizer, cfg.lr_patience)
        return epoch_decay(optimizer, cfg.lrscheduler_start, cfg.lrscheduler_step, cfg.lrscheduler_decay)

    def state(self) -> dict:
        return {"cum_scores": self.cum_scores}

    def restore(self, extra: dict) -> None:
        self.cum_scores = extra.get("cum_scores")

    def step(self, run, x, batch):
        label = batch["label"].to(run.info.device, non_blocking=True)
        with autocast(self.config, run.info.device):
            logits = run.net(x, self.config.task)
        loss = self.crit(logits.float(), label)
        return loss, loss[None]

    def evaluate(self, run, window, lr) -> Evaluation:
        cfg = self.config
        stats = evaluate(run.net, run.val_ds, run.val_frontend, cfg, run.info, run.prog)
        scores = torch.from_numpy(stats["_scores"]).double()
        self.cum_scores = scores if self.cum_scores is None else scores + self.cum_scores
        cum = calculate_stats((self.cum_scores / (run.epoch + 1)).numpy(), stats["_targets"])
        last = _kept(stats)
        return Evaluation(metric=stats[cfg.metrics], plateau=stats["mAP"],  # mAP whatever metrics says, as the reference
                          row=last, result=result_row(stats, cum, cfg.metrics, window[0], lr), last=last)

    def best_position(self, step: int, epoch: int) -> int:
        return epoch + 1

    def epoch_model(self, step: int, epochs_done: int) -> int | None:
        cfg = self.config
        keep = cfg.epoch_models or (cfg.wa and cfg.wa_start <= epochs_done <= cfg.wa_end)
        return epochs_done if keep else None

    def after_evaluation(self, run, ev: Evaluation) -> None:
        if run.info.is_main:
            print(f"epoch {run.epoch + 1}: {_fmt(ev.last)} (best {self.config.metrics} {run.best:.4f} at epoch "
                  f"{run.best_at})", flush=True)

    def summary(self, run) -> dict:
        return {f"best_val_{self.config.metrics}": run.best, "best_epoch": run.best_at}

    def finish(self, run, summary: dict) -> None:
        """Weight averaging (the reference: after training, before the evaluation set), then the
        evaluation set scored with the best validation model."""
        cfg, info, main = self.config, run.info, run.info.is_main
        if cfg.wa:
            summary["wa_model"] = weight_average(run.model, run.ckpt, cfg, info)
            w = evaluate(run.net, run.val_ds, run.val_frontend, cfg, info, run.prog)
            summary["wa_val"] = _kept(w)
            if main:
                np.savetxt(os.path.join(cfg.exp_dir, "wa_result.csv"),
                           [w["mAP"], w["mAUC"], w["mid_precision"], w["mid_recall"], w["d_prime"]])
        if cfg.data_eval:
            best = os.path.join(cfg.exp_dir, "checkpoints", "best.pt")
            best_sd = load_training_checkpoint(best)["model"] if main else None
            run.model.load_state_dict(all_gather_objects(best_sd, info)[0])  # rank 0's copy to every rank
            eval_ds = build_dataset(cfg, cfg.data_eval, False, run.labels)
            v = evaluate(run.net, run.val_ds, run.val_frontend, cfg, info)
            e = evaluate(run.net, eval_ds, run.val_frontend, cfg, info)
            summary["best_model_val"], summary["best_model_eval"] = _kept(v), _kept(e)
            if main:
                np.savetxt(os.path.join(cfg.exp_dir, "eval_result.csv"), [v["acc"], v["mAUC"], e["acc"], e["mAUC"]])

    def summary_lines(self, run, summary: dict) -> dict:
        cfg = self.config
        lines = {f"best val {cfg.metrics}": f"{run.best:.4f} at epoch {run.best_at}", "last val": _fmt(run.last)}
        if "wa_val" in summary:
            lines[f"weight average {cfg.wa_start}-{cfg.wa_end}"] = _fmt(summary["wa_val"])
        if "best_model_eval" in summary:
            lines["eval set (best model)"] = _fmt(summary["best_model_eval"])
        return lines


def finetune(config: FinetuneConfig) -> dict:
    """Run (or resume) fine-tuning -> summary dict (also ``<exp_dir>/summary.json``)."""
    return train(config, Finetuning(config))
