"""Checkpoint interop with the reference code.

The reference saves ``torch.nn.DataParallel(model).state_dict()``: every key carries a
``module.`` prefix. ``load_reference`` accepts that, a plain state dict, a wrapped dict
(``{"model": sd}`` / ``{"state_dict": sd}``) or an in-memory mapping; ``save_reference``
writes the reference's format so the official code loads what we train.

A file a user hands us is data, never code: every read goes through :func:`safe_load`
(``torch.load(weights_only=True)``), which refuses a file that pickles anything but tensors,
numbers, strings, lists and dicts. :func:`load_model_file` is the one entry for "a model or
checkpoint file" (reference state dict or our training checkpoint).
"""
from __future__ import annotations

import os
import pickle
import re
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


def _numpy_rng_globals() -> list:
    """The NumPy objects of a format-1 training checkpoint: ``np.random.get_state()``'s uint32 array
    (ndarray rebuilt by ``_reconstruct`` with its dtype), under NumPy 1's and NumPy 2's names."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    rebuild = core.multiarray._reconstruct
    allowed = [np.ndarray, np.dtype, (rebuild, "numpy.core.multiarray._reconstruct"),
               (rebuild, "numpy._core.multiarray._reconstruct")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed.append(dtypes.UInt32DType)
    return allowed


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_ALLOWED_NAMES = {"numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
                  "numpy._core.multiarray._reconstruct", "numpy.dtypes.UInt32DType"}


def _refused_names(path: str, exc: Exception) -> list[str]:
    """The globals (importable objects) a file asks for that we do not allow: from the zip's pickle
    without unpickling it, or from torch's message (legacy format)."""
    names: list[str] = []
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 (legacy format or unreadable: fall back to the message)
        pass
    names += _GLOBAL.findall(str(exc))
    return [n for n in dict.fromkeys(names) if n not in _ALLOWED_NAMES]


def _reason(exc: Exception) -> str:
    """torch's specific reason inside its weights_only message (without the advice around it)."""
    text = str(exc).split("Check the documentation")[0]
    parts = [p.strip() for p in text.split("\n\n") if p.strip()]
    return parts[-1].replace("\n", " ") if len(parts) > 1 else text.strip()


def safe_load(path: str | os.PathLike, *, what: str = "checkpoint") -> object:
    """Read the file ``path`` as plain data, onto the CPU: ``torch.load(weights_only=True)``.

    Tensors, numbers, strings, None, lists, tuples and dicts load (plus the NumPy RNG array of a
    format-1 training checkpoint); a file that pickles any other object is refused without running
    it. Raises ValueError naming the file: missing, corrupt, or refused (with the objects it asks for).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{what} not found: {path!r}")
    try:
        with torch.serialization.safe_globals(_numpy_rng_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        names = _refused_names(path, exc)
        if not names:
            raise ValueError(f"{what} {path!r} is corrupt or not a torch checkpoint: {_reason(exc)}") from None
        raise ValueError(
            f"{what} {path!r} is refused: it holds pickled Python objects that are not plain data "
            f"({', '.join(names)}). Model and checkpoint files may hold only tensors, numbers, strings, "
            "lists and dicts; loading this one could run code, so nothing of it was loaded.") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{what} {path!r} is corrupt or not a torch checkpoint: {exc}") from exc


def load_reference(source: StateDictSource) -> dict[str, torch.Tensor]:
    """Load a reference-format checkpoint (path or mapping) -> {reference key: tensor} on CPU.

    Raises ValueError for a missing, unreadable or non-state-dict file.
    """
    if isinstance(source, Mapping):
        raw = source
        where = "the given state dict"
    elif isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        raw = safe_load(where)
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
# Format 2 holds plain data only (RNG states as tensors, numbers and dicts) and loads with
# torch.load(weights_only=True); format 1 (up to f89caa0) pickled NumPy's RNG state array and loads
# through safe_load's few NumPy globals.
TRAINING_FORMAT = "ssast_fast.training/2"
TRAINING_FORMATS = ("ssast_fast.training/1", TRAINING_FORMAT)


def capture_rng_state() -> dict:
    """The RNG states a training step consumes -- Python ``random``, NumPy, torch CPU and CUDA -- as
    plain data (tensors, numbers, dicts)."""
    import random

    import numpy as np

    version, internal, gauss = random.getstate()
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss},
             "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping) -> None:
    """Inverse of :func:`capture_rng_state` (also the raw states of format 1; CUDA states only where
    CUDA is available)."""
    import random

    import numpy as np

    py, npy = state["python"], state["numpy"]
    if isinstance(py, Mapping):
        py = (py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"])
    if isinstance(npy, Mapping):
        npy = (npy["kind"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    random.setstate(py)
    np.random.set_state(npy)
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
    run ``config`` and ``extra`` (loop state: batches done in the epoch, best metric, ...); all
    plain data, so ``torch.load(path, weights_only=True)`` reads it.
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


def _is_training(obj: object) -> bool:
    return isinstance(obj, Mapping) and obj.get("format") in TRAINING_FORMATS


def load_training_checkpoint(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`save_training_checkpoint` (format 1 or 2; :func:`safe_load`).
    Raises ValueError otherwise."""
    path = os.fspath(path)
    ckpt = safe_load(path, what="training checkpoint")
    if not _is_training(ckpt):
        raise ValueError(f"{path!r} is not an ssast_fast training checkpoint (use load_reference for model files)")
    return ckpt


def load_model_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The one reader of a model or checkpoint file a user hands us -> ``(state dict, training
    checkpoint or None)``.

    A training checkpoint gives its model's state dict and itself; any other file must be a
    reference-format state dict (:func:`load_reference`). Read once, as plain data
    (:func:`safe_load`); ValueError naming the file when it is missing, corrupt, refused or
    holds no state dict.
    """
    path = os.fspath(path)
    raw = safe_load(path)
    if _is_training(raw):
        return load_reference(raw["model"]), raw
    try:
        return load_reference(raw), None
    except ValueError:
        raise ValueError(f"{path!r} is not a state dict (a mapping of names to tensors) "
                         "nor an ssast_fast training checkpoint") from None

