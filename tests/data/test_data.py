"""Datasets, audio I/O, resampling, mixup / noise semantics, collate."""
import json
import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from ssast_fast.data import (AudioDataset, BadAudioError, add_noise, collate, load_audio, load_label_csv,
                             mix_waveforms, resample)
from ssast_fast.data.synth import make_tiny_dataset


def _peak_hz(x: torch.Tensor, sr: int) -> float:
    spec = torch.fft.rfft(x.double() * torch.hann_window(x.shape[0], dtype=torch.float64)).abs()
    return float(spec.argmax()) * sr / x.shape[0]


@pytest.mark.parametrize("orig", [8000, 22050, 44100, 48000])
def test_resample_keeps_sine_frequency(orig):
    f = 1000.0
    t = torch.arange(orig) / orig
    y = resample(torch.sin(2 * math.pi * f * t), orig, 16000)
    assert y.shape == (16000,)
    assert abs(_peak_hz(y, 16000) - f) <= 1.0
    ref = torch.sin(2 * math.pi * f * torch.arange(16000) / 16000)
    assert (y[300:-300] - ref[300:-300]).abs().max() < 5e-3  # amplitude and phase kept


def test_resample_removes_content_above_new_nyquist():
    sr = 48000
    t = torch.arange(sr) / sr
    y = resample(torch.sin(2 * math.pi * 12000 * t), sr, 16000)  # 12 kHz > 8 kHz Nyquist
    assert y[300:-300].abs().max() < 0.02


def test_load_audio_downmix_and_formats(tmp_path):
    sr = 16000
    t = np.arange(sr // 2) / sr
    left, right = np.sin(2 * np.pi * 440 * t), 0.5 * np.ones_like(t)
    for ext in ("wav", "flac", "ogg"):
        p = tmp_path / f"a.{ext}"
        sf.write(p, np.stack([left, right], 1).astype(np.float32) * 0.5, sr)
        x = load_audio(p, sr)
        assert x.dtype == torch.float32 and x.dim() == 1
        tol = 0.05 if ext == "ogg" else 1e-3
        assert abs(float(x.mean()) - 0.125) < tol  # mean of (0.5 sin + 0.25) / 2 channels
        assert abs(_peak_hz(x - x.mean(), sr) - 440) <= 2.0
    sf.write(tmp_path / "b.wav", left.astype(np.float32), 8000)
    assert load_audio(tmp_path / "b.wav", 16000).shape[0] == 2 * len(left)


def test_labels_and_relative_paths(tmp_path):
    ds_files = make_tiny_dataset(tmp_path, n_clips=4, n_class=3, seconds=0.1)
    lm = load_label_csv(ds_files["labels"])
    assert len(lm) == 3 and lm.index["/m/c2"] == 2 and lm.names[1] == "tone 400 Hz"
    np.testing.assert_array_equal(lm.multi_hot("/m/c0,/m/c2"), [1, 0, 1])
    data = json.load(open(ds_files["train"]))["data"]
    for d in data:
        d["wav"] = os.path.relpath(d["wav"], tmp_path)  # relative to the JSON's folder
    (tmp_path / "rel.json").write_text(json.dumps({"data": data}))
    ds = AudioDataset(tmp_path / "rel.json", lm)
    item = ds[1]
    assert item["label"].tolist() == [0, 1, 0] and item["wave"].shape == (1600,)
    with pytest.raises(ValueError, match="unknown label '/m/zz'"):
        (tmp_path / "bad.json").write_text(json.dumps({"data": [{"wav": "x.wav", "labels": "/m/zz"}]}))
        AudioDataset(tmp_path / "bad.json", lm)


def test_bad_audio_names_file_and_line_or_is_skipped(tmp_path, caplog):
    files = make_tiny_dataset(tmp_path, n_clips=3, n_class=2, seconds=0.1)
    data = json.load(open(files["train"]))["data"]
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    data[1]["wav"] = str(tmp_path / "junk.wav")
    data.append({"wav": str(tmp_path / "missing.wav"), "labels": "/m/c0"})
    (tmp_path / "d.json").write_text(json.dumps({"data": data}, indent=1))
    line_of = {i: n + 1 for n, line in enumerate((tmp_path / "d.json").read_text().splitlines())
               for i, d in enumerate(data) if f'"wav": "{d["wav"]}"' in line}
    ds = AudioDataset(tmp_path / "d.json", files["labels"])
    with pytest.raises(BadAudioError) as e:
        ds[1]
    assert "junk.wav" in str(e.value) and "entry 1" in str(e.value) and f"line {line_of[1]}" in str(e.value)
    with pytest.raises(BadAudioError, match=rf"missing.wav.*entry 3 \(line {line_of[3]}\)"):
        ds[3]
    ds = AudioDataset(tmp_path / "d.json", files["labels"], skip_bad_audio=True)
    item = ds[1]
    assert item["skipped"] == [str(tmp_path / "junk.wav")]
    assert item["label"].tolist() == [1, 0]  # entry 2's clip and label replace entry 1
    assert ds[3]["skipped"] == [str(tmp_path / "missing.wav")]  # wraps to entry 0
    assert "skipping bad audio" in caplog.text
    batch = collate([ds[0], ds[1], ds[3]])
    assert len(batch["skipped"]) == 2


def test_mix_waveforms_semantics():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = torch.tensor([10.0, 0.0])
    m = mix_waveforms(a, b, 0.25)
    assert m.shape == (4,) and abs(float(m.mean())) < 1e-6
    a0, b0 = a - a.mean(), torch.tensor([5.0, -5.0, 0.0, 0.0])  # b mean-removed, then zero-padded
    expect = 0.25 * a0 + 0.75 * b0
    torch.testing.assert_close(m, expect - expect.mean())
    assert mix_waveforms(a, torch.arange(10.0), 0.5).shape == (4,)  # the second clip is cut


def test_dataset_mixup_labels_and_determinism(tmp_path):
    files = make_tiny_dataset(tmp_path, n_clips=6, n_class=3, seconds=0.1)
    ds = AudioDataset(files["train"], files["labels"], mixup=1.0, seed=3)
    items = [ds[i] for i in range(6)]
    for it in items:
        assert abs(float(it["label"].sum()) - 1.0) < 1e-6  # lam * y1 + (1 - lam) * y2
        assert 0.0 < float(it["label"].max()) <= 1.0
        assert abs(float(it["wave"].mean())) < 1e-5
    assert any(float(it["label"].max()) < 1.0 for it in items)
    again = AudioDataset(files["train"], files["labels"], mixup=1.0, seed=3)
    for i in range(6):
        torch.testing.assert_close(again[i]["wave"], items[i]["wave"], rtol=0, atol=0)
    again.set_epoch(1)
    assert any(not torch.equal(again[i]["wave"], items[i]["wave"]) for i in range(6))
    assert ds[0]["label"].tolist() != [] and AudioDataset(files["train"], files["labels"], mixup=0.0)[0]["label"].max() == 1.0


def test_add_noise_semantics():
    x = torch.arange(40.0).reshape(1, 20, 2).repeat(3, 1, 1)
    g = torch.Generator().manual_seed(0)
    y = add_noise(x, generator=g)
    g = torch.Generator().manual_seed(0)
    scale = torch.rand((3, 1, 1), generator=g) / 10
    noise = torch.rand(x.shape, generator=g) * scale
    shift = torch.randint(-10, 10, (3,), generator=g)
    for b in range(3):
        torch.testing.assert_close(y[b], torch.roll(x[b] + noise[b], int(shift[b]), 0))
    d = y - torch.stack([torch.roll(x[b], int(shift[b]), 0) for b in range(3)])
    assert float(d.min()) >= 0 and float(d.max()) < 0.1


def test_collate_pads_waveforms():
    items = [{"wave": torch.ones(5), "label": torch.zeros(2), "index": 0, "skipped": []},
             {"wave": torch.ones(3), "label": torch.ones(2), "index": 7, "skipped": []}]
    b = collate(items)
    assert b["wave"].shape == (2, 5) and b["lengths"].tolist() == [5, 3]
    assert b["wave"][1].tolist() == [1, 1, 1, 0, 0] and b["index"].tolist() == [0, 7]
