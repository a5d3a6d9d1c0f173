"""What pretraining and fine-tuning do differently: the :class:`Stage` interface the training loop
(:mod:`~ssast_fast.train.loop`) calls, and one :class:`Evaluation`'s outcome. ``run`` in the
methods is the loop's :class:`~ssast_fast.train.loop.Trainer` (model, net, info, data, progress,
best so far)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from ssast_fast.train.config import RunConfig


@dataclass
class Evaluation:
    """One evaluation: ``metric`` picks the best model (higher is better), ``plateau`` feeds a
    plateau schedule, ``row`` goes to the metrics log, ``result`` to result.csv, ``last`` to the summary."""

    metric: float
    plateau: float
    row: dict
    result: list[float]
    last: dict


class Stage(ABC):
    """What pretraining and fine-tuning do differently; :func:`ssast_fast.train.loop.train` calls these.

    Attributes: ``name`` (progress, summary ``stage``), ``title`` (printed), ``terms`` (names of the
    per-step values :meth:`step` returns, the loss first), ``window_terms`` (how many of them are
    averaged since the last evaluation for result.csv), ``window_keys`` / ``best_key`` (their names
    in the checkpoint's loop state), ``train_columns`` (a training log row's keys, in order),
    ``result_rows`` (rows result.csv is padded to), ``evaluates_per_epoch`` (evaluate at the end of
    every epoch, else when :meth:`evaluation_due`), ``warmup`` (warm up the lr), ``curves`` (the
    ``(split, key)`` panels of curves.png), ``logs`` (files named in the printed summary).
    """

    name: str
    title: str
    terms: tuple[str, ...]
    window_terms: int
    window_keys: tuple[str, str]
    best_key: str
    train_columns: tuple[str, ...]
    result_rows: int | None = None
    evaluates_per_epoch: bool = False
    warmup: bool = True
    curves: list[tuple[str, str]]
    logs: str

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    def read_files(self) -> None:
        """Read the files a fresh run starts from (before anything is written)."""

    @abstractmethod
    def labels(self):
        """The LabelMap of the data."""

    @abstractmethod
    def build_model(self, ck: dict | None) -> nn.Module:
        """The model (on the CPU): from the checkpoint ``ck`` when resuming."""

    @abstractmethod
    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer of ``model``'s parameters (its groups' lrs are the warm-up's base lrs)."""

    @abstractmethod
    def scheduler(self, optimizer: torch.optim.Optimizer):
        """The lr schedule, stepped after every evaluation (a plateau schedule reads its ``plateau``)."""

    def state(self) -> dict:
        """The stage's own loop state for the checkpoint (also its fresh values)."""
        return {}

    def restore(self, extra: dict) -> None:
        """Take the stage's own loop state back from a checkpoint's ``extra``."""

    @abstractmethod
    def step(self, run, x: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """One training forward -> (loss to differentiate, 1-D tensor of the values named ``terms``)."""

    def evaluation_due(self, step: int) -> bool:
        """True: evaluate after this step (stages that evaluate every ``n`` steps)."""
        return False

    @abstractmethod
    def evaluate(self, run, window: list[float], lr: float) -> Evaluation:
        """Validate ``run.net`` (``window``: mean training values since the last evaluation)."""

    @abstractmethod
    def best_position(self, step: int, epoch: int) -> int:
        """What the checkpoint records with a new best (a step or an epoch number)."""

    @abstractmethod
    def epoch_model(self, step: int, epochs_done: int) -> int | None:
        """N of ``models/audio_model.<N>.pth`` to write at this evaluation, or None."""

    def after_evaluation(self, run, ev: Evaluation) -> None:
        """Called on every rank once an evaluation is saved and logged."""

    @abstractmethod
    def summary(self, run) -> dict:
        """The stage's best-model entries of summary.json."""

    def finish(self, run, summary: dict) -> None:
        """Collective work after the last epoch (adds to ``summary``)."""

    def plots(self, run) -> None:
        """Rank 0: pictures beside curves.png."""

    @abstractmethod
    def summary_lines(self, run, summary: dict) -> dict:
        """The stage's lines of the printed summary."""
