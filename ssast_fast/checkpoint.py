"""Checkpoint interop with the reference code.

The reference saves ``torch.nn.DataParallel(model).state_dict()``: every key carries a
``module.`` prefix. ``load_reference`` accepts that, a plain state dict, a wrapped dict
(``{"model": sd}`` / ``{"state_dict": sd}``) or an in-memory mapping; ``save_reference``
writes the reference's format so the official code loads what we train.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Union

import torch
from torch import nn

StateDictSource = Union[str, os.PathLike, Mapping]
_PREFIXES = ("module.", "_orig_mod.")


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def _torch_load(path: str, *, weights_only: bool, what: str, corrupt: str) -> object:
    """``torch.load`` of the file ``path`` onto the CPU; ValueError ``"{what} not found: ..."``
    for a missing file, ``"{what} ... is {corrupt}: ..."`` for an unreadable one."""
    if not os.path.isfile(path):
        raise ValueError(f"{what} not found: {path!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{what} {path!r} is {corrupt}: {exc}") from exc


def load_reference(source: StateDictSource) -> dict[str, torch.Tensor]:
    """Load a reference-format checkpoint (path or mapping) -> {reference key: tensor} on CPU.

    Raises ValueError for a missing, unreadable or non-state-dict file.
    """
    if isinstance(source, Mapping):
        raw = source
        where = "the given state dict"
    elif isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        raw = _torch_load(where, weights_only=True, what="checkpoint",
                          corrupt="corrupt or not a torch checkpoint")
    else:
        raise TypeError(f"checkpoint must be a path or a state-dict mapping, got {type(source).__name__}")
    for wrapper in ("model", "state_dict"):
        if isinstance(raw, Mapping) and isinstance(raw.get(wrapper), Mapping):
            raw = raw[wrapper]
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError(f"{where} is not a state dict (a mapping of names to tensors)")
    return {_strip(k): v for k, v in raw.items()}


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_reference(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``model``'s weights as the reference saves them (``module.``-prefixed keys)."""
    sd = {"module." + k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(sd, tmp)
    os.replace(tmp, path)


# ---- training checkpoints (ours) ---------------------------------------------------------------
TRAINING_FORMAT = "ssast_fast.training/1"


def capture_rng_state() -> dict:
    """The RNG states a training step consumes: Python ``random``, NumPy, torch CPU and CUDA."""
    import random

    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only where CUDA is available)."""
    import random

    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same folder, fsync it, then ``os.replace`` onto ``path``.

    A crash at any moment leaves either the old file or the new one, never a torn file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    try:  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save_training_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer, scheduler,
                             step: int, epoch: int, config: Mapping, extra: Mapping | None = None) -> None:
    """One file with everything ``--resume`` needs, written atomically.

    Holds the bare model's state dict, optimizer and scheduler states, ``step`` (optimizer steps
    done), ``epoch`` (0-based epoch in progress), the RNG states (:func:`capture_rng_state`), the
    run ``config`` and ``extra`` (loop state: batches done in the epoch, best metric, ...).
    """
    atomic_torch_save({
        "format": TRAINING_FORMAT,
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": int(step),
        "epoch": int(epoch),
        "rng": capture_rng_state(),
        "config": dict(config),
        "extra": dict(extra or {}),
    }, path)


def load_training_checkpoint(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`save_training_checkpoint` (on the CPU). Raises ValueError otherwise."""
    path = os.fspath(path)
    ckpt = _torch_load(path, weights_only=False, what="training checkpoint", corrupt="corrupt")
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != TRAINING_FORMAT:
        raise ValueError(f"{path!r} is not an ssast_fast training checkpoint (use load_reference for model files)")
    return ckpt


def is_training_checkpoint(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file written by :func:`save_training_checkpoint`."""
    try:
        load_training_checkpoint(path)
        return True
    except ValueError:
        return False
