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


def load_reference(source: StateDictSource) -> dict[str, torch.Tensor]:
    """Load a reference-format checkpoint (path or mapping) -> {reference key: tensor} on CPU.

    Raises ValueError for a missing, unreadable or non-state-dict file.
    """
    if isinstance(source, Mapping):
        raw = source
        where = "the given state dict"
    elif isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        if not os.path.isfile(where):
            raise ValueError(f"checkpoint not found: {where!r}")
        try:
            raw = torch.load(where, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise ValueError(f"checkpoint {where!r} is corrupt or not a torch checkpoint: {exc}") from exc
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
