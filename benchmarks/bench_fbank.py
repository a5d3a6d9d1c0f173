"""Kaldi fbank throughput: 32 clips x 10 s at 16 kHz with the SSAST options.

``torch_per_clip``   the readable torch path, one clip at a time (the reference's way: per clip
                     in data-loader workers, torchaudio's algorithm);
``cpp_batch``        the C++ kernel on the whole batch (``fbank_batch(..., backend="cpp")``);
``knf_per_clip_80``  kaldi-native-fbank per clip at 80 bins (it refuses 128 bins at 16 kHz:
                     one filter is empty), frames read back with ``get_frame``;
``cpp_batch_80``     ours at 80 bins, to compare with it;
``triton_batch``     the fused Triton kernel on CUDA tensors (skipped without a GPU).

Run: python -m pytest benchmarks/bench_fbank.py --benchmark-only  (TRITON_INTERPRET unset).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ssast_fast import _ext
from ssast_fast.features import fbank, fbank_batch

CLIPS, SECONDS, SR = 32, 10, 16000
SSAST = dict(htk_compat=True, sample_frequency=SR, use_energy=False, window_type="hanning",
             num_mel_bins=128, dither=0.0, frame_shift=10)
SSAST80 = dict(SSAST, num_mel_bins=80)


@pytest.fixture(scope="module")
def waves() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (0.1 * torch.randn(CLIPS, SECONDS * SR, generator=g)).clamp(-1, 1)


def test_torch_per_clip(benchmark, waves):
    benchmark.pedantic(lambda: [fbank(w, backend="torch", **SSAST) for w in waves], rounds=3)


@pytest.mark.skipif(not _ext.available(), reason="needs the compiled extension")
def test_cpp_batch(benchmark, waves):
    benchmark.pedantic(lambda: fbank_batch(waves, backend="cpp", **SSAST), rounds=20)


@pytest.mark.skipif(not _ext.available(), reason="needs the compiled extension")
def test_cpp_batch_80(benchmark, waves):
    benchmark.pedantic(lambda: fbank_batch(waves, backend="cpp", **SSAST80), rounds=20)


def test_knf_per_clip_80(benchmark, waves):
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SR
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hanning"
    opts.mel_opts.num_bins = 80
    clips = [w.numpy() for w in waves]

    def run():
        out = []
        for x in clips:
            f = knf.OnlineFbank(opts)
            f.accept_waveform(SR, x)
            f.input_finished()
            out.append(np.stack([f.get_frame(i) for i in range(f.num_frames_ready)]))
        return out

    benchmark.pedantic(run, rounds=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Triton fbank benchmark needs a GPU")
def test_triton_batch(benchmark, waves):
    x = waves.cuda()

    def run():
        out, _ = fbank_batch(x, backend="triton", **SSAST)
        torch.cuda.synchronize()
        return out

    run()  # compile
    benchmark.pedantic(run, rounds=50, warmup_rounds=5)
    benchmark.extra_info["x_real_time"] = CLIPS * SECONDS / benchmark.stats.stats.median
