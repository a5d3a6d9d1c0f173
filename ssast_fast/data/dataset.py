"""Datasets in the reference format.

A dataset is a JSON file ``{"data": [{"wav": path, "labels": "mid1,mid2"}, ...]}`` plus a label
CSV with columns ``index,mid,display_name``; labels become a multi-hot float vector. Items are
waveforms (mono float32 at the configured rate); the spectrogram is computed later, batched, by
``ssast_fast.features.FrontEnd`` on the model's device (or per clip in the workers, see
``AudioDataset(frontend=...)``).

Randomness (mixup decision, partner, lambda; worker-side SpecAugment and noise) comes from a
generator seeded by ``(seed, epoch, index)``: the stream does not depend on the worker count or
on where a run was resumed.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ssast_fast.data.audio import AudioDecodeError, load_audio
from ssast_fast.data.augment import mix_waveforms

log = logging.getLogger("ssast_fast.data")


class BadAudioError(RuntimeError):
    """A dataset entry whose audio is missing or undecodable; the message names file, entry and line."""


@dataclass(frozen=True)
class LabelMap:
    """Label CSV contents: ``mid -> index`` and ``index -> display_name``."""

    index: dict[str, int]
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def multi_hot(self, labels: str, where: str = "") -> np.ndarray:
        """``"mid1,mid2"`` -> float32 [n_class] with ones at those classes."""
        out = np.zeros(len(self), dtype=np.float32)
        for mid in labels.split(","):
            mid = mid.strip()
            if not mid:
                continue
            if mid not in self.index:
                raise ValueError(f"unknown label {mid!r}{where}; not in the label CSV")
            out[self.index[mid]] = 1.0
        return out


def load_label_csv(path: str | os.PathLike) -> LabelMap:
    """Read a label CSV (header ``index,mid,display_name``) -> LabelMap."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"index", "mid"} <= set(rows[0]):
        raise ValueError(f"label CSV {os.fspath(path)!r} needs the columns index,mid,display_name")
    index = {r["mid"]: int(r["index"]) for r in rows}
    n = max(index.values()) + 1
    names = [""] * n
    for r in rows:
        names[int(r["index"])] = r.get("display_name") or r["mid"]
    return LabelMap(index, names)


def _entry_lines(text: str, count: int) -> list[int | None]:
    """1-based line of each entry's ``"wav"`` key in the JSON text (None where it cannot tell)."""
    starts = [m.start() for m in re.finditer(r'"wav"\s*:', text)]
    if len(starts) != count:
        return [None] * count
    lines, line, pos = [], 1, 0
    for s in starts:
        line += text.count("\n", pos, s)
        pos = s
        lines.append(line)
    return lines


class AudioDataset(Dataset):
    """Reference-format dataset -> items ``{"wave": [T] float32, "label": [C], "index": int, "skipped": [str]}``.

    Args:
        json_path: the dataset JSON; relative ``wav`` paths are taken relative to its folder
            when they do not exist relative to the working directory.
        labels: LabelMap (or label CSV path); an empty LabelMap ignores the labels (pretraining).
        sample_rate: Hz of the returned waveforms (files at other rates are resampled).
        mixup: probability of mixing each clip with a uniformly chosen other one (SPEC 1.8).
        skip_bad_audio: replace an undecodable clip by the next decodable entry (logged and
            reported in ``item["skipped"]``) instead of raising BadAudioError.
        frontend: optional ``FrontEnd`` (CPU) to compute the spectrogram in the worker; the item
            then carries ``"fbank"`` [target_length, bins] instead of the waveform.
        noise: with ``frontend``, apply the noise augmentation (SPEC 1.7) in the worker too.
        seed: base seed of the per-item generators.
    """

    def __init__(self, json_path: str | os.PathLike, labels: LabelMap | str | os.PathLike,
                 sample_rate: int = 16000, mixup: float = 0.0, skip_bad_audio: bool = False,
                 frontend: torch.nn.Module | None = None, noise: bool = False, seed: int = 0) -> None:
        self.json_path = os.fspath(json_path)
        with open(self.json_path, encoding="utf-8") as f:
            text = f.read()
        try:
            data = json.loads(text)["data"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.json_path}: not a dataset JSON of the form {{\"data\": [...]}}: {exc}") from exc
        if not isinstance(data, list) or not data:
            raise ValueError(f"{self.json_path}: \"data\" must be a non-empty list")
        self.labels = labels if isinstance(labels, LabelMap) else load_label_csv(labels)
        self.lines = _entry_lines(text, len(data))
        root = os.path.dirname(os.path.abspath(self.json_path))
        self.paths: list[str] = []
        self.targets: list[np.ndarray] = []
        for i, d in enumerate(data):
            if not isinstance(d, dict) or "wav" not in d:
                raise ValueError(f"{self._where(i)}: entry has no \"wav\" field")
            p = d["wav"]
            if not os.path.isabs(p) and not os.path.exists(p) and os.path.exists(os.path.join(root, p)):
                p = os.path.join(root, p)
            self.paths.append(p)
            self.targets.append(self.labels.multi_hot(str(d.get("labels", "")), f" ({self._where(i)})")
                                if len(self.labels) else np.zeros(0, dtype=np.float32))  # no CSV: labels unused
        self.sample_rate, self.mixup, self.skip_bad_audio = sample_rate, float(mixup), skip_bad_audio
        self.frontend, self.noise, self.seed, self.epoch = frontend, noise, int(seed), 0
        self.sample_weights: torch.Tensor | None = None  # per-clip weights of balanced sampling (--bal bal)

    @property
    def n_class(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's augmentation stream (call before iterating; also sets workers' copy)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def _where(self, i: int) -> str:
        line = self.lines[i] if hasattr(self, "lines") else None
        return f"{self.json_path}, entry {i}" + (f" (line {line})" if line else "")

    def _load(self, i: int) -> torch.Tensor:
        try:
            return load_audio(self.paths[i], self.sample_rate)
        except AudioDecodeError as exc:
            raise BadAudioError(f"{exc} [{self._where(i)}]") from exc

    def _load_or_skip(self, i: int, skipped: list[str]) -> tuple[int, torch.Tensor]:
        for k in range(len(self)):
            j = (i + k) % len(self)
            try:
                return j, self._load(j)
            except BadAudioError as exc:
                if not self.skip_bad_audio:
                    raise
                log.warning("skipping bad audio: %s", exc)
                skipped.append(self.paths[j])
        raise BadAudioError(f"{self.json_path}: no entry could be decoded")

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        skipped: list[str] = []
        i, wave = self._load_or_skip(int(index), skipped)
        label = self.targets[i]
        if self.mixup > 0 and rng.random() < self.mixup:
            j, other = self._load_or_skip(int(rng.integers(len(self))), skipped)
            lam = float(rng.beta(10, 10))
            wave = mix_waveforms(wave, other, lam)
            label = lam * label + (1 - lam) * self.targets[j]
        item = {"label": torch.from_numpy(np.asarray(label, dtype=np.float32)), "index": int(index), "skipped": skipped}
        if self.frontend is None:
            item["wave"] = wave
            return item
        from ssast_fast.data.augment import add_noise

        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.no_grad():
            feats = self.frontend(wave[None], torch.tensor([wave.shape[0]]), generator=g)
            if self.noise:
                feats = add_noise(feats, generator=g)
        item["fbank"] = feats[0]
        return item


def collate(items: list[dict]) -> dict:
    """Stack items -> ``{"wave": [B, T_max] zero-padded, "lengths": [B] int64}`` or ``{"fbank": [B, T, F]}``,
    plus ``"label"`` [B, C], ``"index"`` [B] int64 and ``"skipped"`` (paths replaced in this batch)."""
    out = {
        "label": torch.stack([it["label"] for it in items]),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "skipped": [p for it in items for p in it["skipped"]],
    }
    if "fbank" in items[0]:
        out["fbank"] = torch.stack([it["fbank"] for it in items])
        return out
    lengths = torch.tensor([it["wave"].shape[0] for it in items], dtype=torch.long)
    wave = torch.zeros(len(items), int(lengths.max()))
    for b, it in enumerate(items):
        wave[b, : it["wave"].shape[0]] = it["wave"]
    out["wave"], out["lengths"] = wave, lengths
    return out
