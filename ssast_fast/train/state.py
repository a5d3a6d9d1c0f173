"""A run's state on disk and in the RNGs: seeding, the checkpoint files, resuming exactly.

Checkpoints (``checkpoints/last.pt``, training format; :mod:`ssast_fast.checkpoint`) hold the
model, optimizer, scheduler, step, epoch, RNG streams, the run's config and the loop state
(``extra``); a resume restores all of them, so the resumed run continues the same numbers.
"""
from __future__ import annotations

import os
import random
import shutil
from dataclasses import fields

import numpy as np
import torch

from ssast_fast.checkpoint import (capture_rng_state, load_training_checkpoint, restore_rng_state, save_reference,
                                   save_training_checkpoint)
from ssast_fast.ops import dispatch
from ssast_fast.train.config import SHAPE_KEYS, RunConfig
from ssast_fast.train.distributed import DistInfo, all_gather_objects


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python ``random`` (masks), NumPy and torch; each rank gets ``seed + rank``."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def check_finite(running, step: int) -> None:
    """Raise FloatingPointError if a running loss sum (tensor or float) is NaN/Inf: one host sync,
    done before logging and before any checkpoint, so a diverged model is never saved."""
    if not bool(torch.isfinite(torch.as_tensor(running)).all()):
        raise FloatingPointError(f"training diverged by step {step} (non-finite loss)")


def check_resume_config(saved: dict, config: RunConfig) -> None:
    """ValueError when ``--resume`` names a checkpoint made with other shape settings
    (:data:`~ssast_fast.train.config.SHAPE_KEYS` this stage has) or another lr schedule."""
    own = {f.name for f in fields(config)}
    bad = [k for k in SHAPE_KEYS + ("adaptschedule",) if k in own and k in saved and saved[k] != getattr(config, k)]
    if bad:
        raise ValueError("--resume: the checkpoint was made with other settings for "
                         + ", ".join(f"{k} ({saved[k]!r} != {getattr(config, k)!r})" for k in bad))


def resume_path(config: RunConfig) -> str | None:
    """``resume``: None, a path, or ``auto`` = ``<exp_dir>/checkpoints/last.pt`` if it exists."""
    if not config.resume:
        return None
    if config.resume == "auto":
        p = os.path.join(config.exp_dir, "checkpoints", "last.pt")
        return p if os.path.exists(p) else None
    return config.resume


def load_resume_checkpoint(config: RunConfig) -> tuple[str | None, dict | None]:
    """``(path, checkpoint)`` to resume from (:func:`resume_path`), its config checked against
    ``config`` (:func:`check_resume_config`); ``(None, None)`` for a fresh run."""
    path = resume_path(config)
    if not path:
        return None, None
    ck = load_training_checkpoint(path)
    check_resume_config(ck["config"], config)
    return path, ck


def restore_training_state(ck: dict, optimizer, scheduler, info: DistInfo) -> tuple[int, int, dict]:
    """Resume from checkpoint ``ck`` (the model's weights are the caller's business): optimizer
    and scheduler states, the kernel choices of the saved run, this rank's RNG streams
    (``extra["rank_rng"]`` of a multi-process run, else the saved ones) -> ``(step, epoch, extra)``."""
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    extra = ck["extra"]
    dispatch.load_state_dict(extra.get("dispatch"))
    restore_rng_state(extra.get("rank_rng", {}).get(info.rank, ck["rng"]) if info.enabled else ck["rng"])
    return ck["step"], ck["epoch"], extra


def checkpoint_extra(info: DistInfo, **loop_state) -> dict:
    """The ``extra`` of a training checkpoint: ``loop_state`` (batches done, best metric, ...),
    the kernel choices (a resume keeps them) and, in a multi-process run, every rank's RNG
    streams (masks, SpecAugment) under ``"rank_rng"`` for an exact resume. Collective: every
    rank must call it."""
    extra = dict(loop_state, dispatch=dispatch.state_dict())
    if info.enabled:
        extra["rank_rng"] = dict(enumerate(all_gather_objects(capture_rng_state(), info)))
    return extra


class Checkpointer:
    """Writes ``checkpoints/last.pt`` (training format) with ``models/audio_model.pth`` (the reference's
    format) and, as links to those two new files (copies where links fail), ``checkpoints/best.pt``,
    ``models/best_audio_model.pth`` and the per-epoch ``models/audio_model.<N>.pth``; rank 0 only."""

    def __init__(self, exp_dir: str, enabled: bool) -> None:
        self.dir = os.path.join(exp_dir, "checkpoints")
        self.models = os.path.join(exp_dir, "models")
        self.enabled = enabled
        if enabled:
            os.makedirs(self.dir, exist_ok=True)
            os.makedirs(self.models, exist_ok=True)

    def save(self, model, optimizer, scheduler, step: int, epoch: int, config: dict, extra: dict, *,
             best: bool = False, epoch_model: int | None = None) -> None:
        """The training state as ``last`` (and ``best`` when ``best``); ``epoch_model``: also as
        ``models/audio_model.<epoch_model>.pth``."""
        if not self.enabled:
            return
        last, model_file = os.path.join(self.dir, "last.pt"), os.path.join(self.models, "audio_model.pth")
        save_training_checkpoint(last, model=model, optimizer=optimizer, scheduler=scheduler, step=step, epoch=epoch,
                                 config=config, extra=extra)
        save_reference(model, model_file)
        if best:
            _link_or_copy(last, os.path.join(self.dir, "best.pt"))
            _link_or_copy(model_file, os.path.join(self.models, "best_audio_model.pth"))
        if epoch_model is not None:
            _link_or_copy(model_file, self.epoch_model_path(epoch_model))

    def epoch_model_path(self, n: int) -> str:
        """``models/audio_model.<n>.pth``: the reference's per-epoch (per-evaluation) model file."""
        return os.path.join(self.models, f"audio_model.{n}.pth")


def _link_or_copy(src: str, dst: str) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy where the file system has none), atomically:
    ``src`` is later replaced by ``os.replace``, never written in place, so ``dst`` keeps this content."""
    tmp = f"{dst}.{os.getpid()}.tmp"
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
