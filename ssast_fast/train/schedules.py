"""Learning-rate schedules of the reference recipe (SPEC.md section 4): the step warm-up, the
plateau schedule (pretraining; fine-tuning with ``adaptschedule``) and the epoch decay."""
from __future__ import annotations

import torch

Plateau = torch.optim.lr_scheduler.ReduceLROnPlateau


def warmup_lr(step: int, base_lr: float, warmup_steps: int = 1000) -> float | None:
    """The reference warm-up: the lr to set before ``step`` (None: leave it as it is).

    ``step / warmup_steps * base_lr``, set every ``warmup_steps // 20`` steps (every 50 of the
    reference's 1000) and at ``step == warmup_steps``; nothing after the warm-up, nothing at all
    for ``warmup_steps <= 0``.
    """
    if warmup_steps <= 0:
        return None
    every = max(1, warmup_steps // 20)
    if step <= warmup_steps and (step % every == 0 or step == warmup_steps):
        return step / warmup_steps * base_lr
    return None


def apply_warmup(optimizer: torch.optim.Optimizer, base_lrs: list[float], step: int, warmup_steps: int) -> None:
    """Set every parameter group's warm-up lr (:func:`warmup_lr` of its base lr) before ``step``."""
    for group, base in zip(optimizer.param_groups, base_lrs):
        lr = warmup_lr(step, base, warmup_steps)
        if lr is not None:
            group["lr"] = lr


def plateau(optimizer: torch.optim.Optimizer, patience: int) -> Plateau:
    """The reference's ReduceLROnPlateau: mode max, factor 0.5."""
    return Plateau(optimizer, mode="max", factor=0.5, patience=patience)


def epoch_decay(optimizer: torch.optim.Optimizer, start: int, every: int, gamma: float):
    """MultiStepLR stepped once per epoch: lr x ``gamma`` at epochs ``start, start + every, ...`` (< 1000)."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(range(start, 1000, every)), gamma=gamma)


def step_scheduler(scheduler, metric: float) -> None:
    """One step after an evaluation: a plateau schedule reads ``metric`` (higher is better)."""
    if isinstance(scheduler, Plateau):
        scheduler.step(metric)
    else:
        scheduler.step()
