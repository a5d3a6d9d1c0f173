"""Scoring a classifier on a dataset (fine-tuning validation, ``eval``): the fine-tuning loss,
the gathered sigmoid scores, and their metrics (:mod:`~ssast_fast.train.metrics`).

The logged validation ``loss`` is the training loss on the logits; ``loss_sigmoid`` is the
reference's validation loss (the same loss on the sigmoid outputs).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ssast_fast.train.build import autocast, make_loader, model_input
from ssast_fast.train.distributed import DistInfo, all_gather_objects
from ssast_fast.train.metrics import calculate_stats
from ssast_fast.train.progress import Progress

# The metrics a summary keeps of an evaluation.
SUMMARY_KEYS = ("mAP", "mAUC", "d_prime", "acc", "loss")


def loss_fn(kind: str):
    """BCE (multi-label, soft targets allowed) or CE (targets -> argmax class)."""
    if kind == "BCE":
        return nn.BCEWithLogitsLoss()
    ce = nn.CrossEntropyLoss()
    return lambda logits, target: ce(logits, target.argmax(dim=1))


@torch.no_grad()
def predict(net, loader, frontend, config, info: DistInfo) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sigmoid scores [N, C], targets [N, C] (dataset order, gathered over ranks) and the mean losses
    per clip: ``loss`` (``config.loss`` on the logits) and ``loss_sigmoid`` (on the sigmoid outputs)."""
    net.eval()
    crit = loss_fn(config.loss)
    idx, scores, targets, losses = [], [], [], []
    for batch in loader:
        x = model_input(batch, frontend, info.device, noise=False)
        with autocast(config, info.device):
            logits = net(x, config.task).float()
        label = batch["label"].to(info.device)
        prob = torch.sigmoid(logits)
        losses.append((float(crit(logits, label)) * x.shape[0], float(crit(prob, label)) * x.shape[0]))
        idx.append(batch["index"].numpy())
        scores.append(prob.cpu().numpy())
        targets.append(batch["label"].numpy())
    net.train()
    parts = all_gather_objects((idx, scores, targets, losses), info)
    seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    totals, count = np.zeros(2), 0
    for pi, ps, pt, pl in parts:
        for i, s, t in zip(pi, ps, pt):
            for k in range(len(i)):
                seen.setdefault(int(i[k]), (s[k], t[k]))  # DistributedSampler pads with repeats
        totals += np.sum(pl, axis=0) if pl else 0.0
        count += sum(len(i) for i in pi)
    order = sorted(seen)
    loss, loss_sigmoid = (totals / max(count, 1)).tolist()
    return (np.stack([seen[i][0] for i in order]), np.stack([seen[i][1] for i in order]),
            {"loss": loss, "loss_sigmoid": loss_sigmoid})


def evaluate(net, ds, frontend, config, info: DistInfo, progress: Progress | None = None) -> dict:
    """Metrics of ``net`` on dataset ``ds``: mAP, mAUC, d_prime, acc, mid_precision, mid_recall,
    loss, loss_sigmoid (+ per-class AP/AUC, and the scores and targets as ``_scores`` / ``_targets``)."""
    loader = make_loader(ds, config, info, train=False, epoch=0, batch_size=config.batch_size * 2)
    batches = progress.wrap(loader, len(loader), "validating") if progress is not None else loader
    scores, targets, losses = predict(net, batches, frontend, config, info)
    stats = calculate_stats(scores, targets)
    stats.update(losses)
    stats["_scores"], stats["_targets"] = scores, targets
    return stats
