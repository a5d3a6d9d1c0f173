"""A tiny synthetic dataset in the reference format (tests, demos, throughput checks).

Each clip is a tone (class k at ``200 * (k + 1)`` Hz) with a little noise, written as 16-bit
WAV with soundfile; returns the paths of ``train.json``, ``val.json`` and ``labels.csv``.
"""
from __future__ import annotations

import csv
import json
import os

import numpy as np


def make_tiny_dataset(folder: str | os.PathLike, n_clips: int = 8, n_class: int = 2, seconds: float = 0.5,
                      sample_rate: int = 16000, seed: int = 0, n_val: int | None = None,
                      rates: tuple[int, ...] | None = None) -> dict[str, str]:
    """Write ``n_clips`` training and ``n_val`` (default n_clips // 2) validation WAVs.

    ``rates`` cycles the files' sample rates (to exercise resampling); default all ``sample_rate``.
    Returns ``{"train": json, "val": json, "labels": csv, "dir": folder}``.
    """
    import soundfile as sf

    folder = os.fspath(folder)
    os.makedirs(os.path.join(folder, "wav"), exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(os.path.join(folder, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for k in range(n_class):
            w.writerow([k, f"/m/c{k}", f"tone {200 * (k + 1)} Hz"])
    out = {"labels": os.path.join(folder, "labels.csv"), "dir": folder}
    n_val = n_clips // 2 if n_val is None else n_val
    rates = rates or (sample_rate,)
    count = 0
    for split, n in (("train", n_clips), ("val", n_val)):
        entries = []
        for i in range(n):
            k = i % n_class
            sr = rates[count % len(rates)]
            count += 1
            t = np.arange(int(seconds * sr)) / sr
            x = 0.5 * np.sin(2 * np.pi * 200 * (k + 1) * t) + 0.02 * rng.standard_normal(t.shape)
            path = os.path.join(folder, "wav", f"{split}_{i:03d}.wav")
            sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
            entries.append({"wav": path, "labels": f"/m/c{k}"})
        out[split] = os.path.join(folder, f"{split}.json")
        with open(out[split], "w") as f:
            json.dump({"data": entries}, f, indent=1)
    return out
