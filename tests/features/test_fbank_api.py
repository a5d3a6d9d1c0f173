"""fbank / fbank_batch API: batching, options across backends, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssast_fast import _ext
from ssast_fast.features import FbankOptions, fbank, fbank_batch

SSAST = dict(htk_compat=True, use_energy=False, window_type="hanning", num_mel_bins=128,
             dither=0.0, frame_shift=10)
BACKENDS = ["torch", "cpp", "triton"]


def _clips(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [0.3 * torch.randn(n, generator=g) for n in lengths]


@pytest.fixture(autouse=True)
def _need_ext(request):
    if "cpp" in request.node.name and not _ext.available():
        pytest.fail("compiled extension ssast_fast._C is not built")


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_rows_equal_single_clip(backend):
    clips = _clips([400, 1999, 5000, 3210])
    feats, frames = fbank_batch(clips, backend=backend, **SSAST)
    assert frames.tolist() == [1 + (len(c) - 400) // 160 for c in clips]
    assert feats.shape == (4, int(frames.max()), 128)
    for i, c in enumerate(clips):
        single = fbank(c, backend=backend, **SSAST)
        assert torch.equal(feats[i, : frames[i]], single), i
        assert (feats[i, frames[i]:] == 0).all()


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_batch_tensor_with_lengths_equals_list(backend):
    clips = _clips([4000, 2500])
    padded = torch.zeros(2, 4000)
    padded[1, 2500:] = 7.0  # junk past the length must be ignored
    for i, c in enumerate(clips):
        padded[i, : len(c)] = c
    a, fa = fbank_batch(padded, torch.tensor([4000, 2500]), backend=backend, **SSAST)
    b, fb = fbank_batch(clips, backend=backend, **SSAST)
    assert torch.equal(fa, fb) and torch.equal(a, b)


OPTION_SETS = [
    dict(window_type="povey", num_mel_bins=23),
    dict(window_type="rectangular", use_power=False, raw_energy=False, use_energy=True),
    dict(window_type="blackman", blackman_coeff=0.4, htk_compat=True, use_energy=True),
    dict(use_log_fbank=False, remove_dc_offset=False, preemphasis_coefficient=0.0),
    dict(vtln_warp=0.9, low_freq=40, high_freq=-400, num_mel_bins=40),
    dict(snip_edges=False, frame_shift=12.5, frame_length=20, energy_floor=0.0,
         use_energy=True),
    dict(sample_frequency=8000, round_to_power_of_two=False),  # FFT 200: C++ direct DFT
    dict(sample_frequency=22050, num_mel_bins=80, subtract_mean=True),
]


@pytest.mark.parametrize("kwargs", OPTION_SETS, ids=lambda k: ",".join(k))
@pytest.mark.parametrize("backend", BACKENDS)
def test_options_match_float64_torch(backend, kwargs):
    """Every option on every backend against the readable torch path in float64."""
    o = FbankOptions(**kwargs)
    if backend == "triton":
        from ssast_fast.features.fbank_triton import supports
        if not supports(o):
            with pytest.raises(ValueError, match="power-of-two"):
                fbank(torch.zeros(4000), backend=backend, **kwargs)
            return
    wav = _clips([int(0.37 * o.sample_frequency)])[0]
    ref = fbank(wav.double(), backend="torch", **kwargs)
    out = fbank(wav, backend=backend, **kwargs)
    assert out.shape == ref.shape and out.dtype == torch.float32
    if o.use_log_fbank:
        near = ref >= ref.max(dim=1, keepdim=True).values - 6 * math.log(10)
        assert (out.double() - ref).abs()[near].max() < 1e-3
        assert (out.double() - ref).abs().max() < 5e-3
    else:
        torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dither_generator_reproducible(backend):
    clips = _clips([2000, 3000])
    kw = dict(SSAST, dither=1.0)
    feats, frames = fbank_batch(clips, generator=torch.Generator().manual_seed(5),
                                backend=backend, **kw)
    g = torch.Generator().manual_seed(5)
    for i, c in enumerate(clips):  # same stream consumed clip by clip
        single = fbank(c, generator=g, backend=backend, **kw)
        torch.testing.assert_close(feats[i, : frames[i]], single)
    # The same noise on the readable torch path (float32 draws, as torchaudio makes them).
    ref = fbank(clips[0], generator=torch.Generator().manual_seed(5), backend="torch", **kw)
    ref = ref.double()
    near = ref >= ref.max(dim=1, keepdim=True).values - 6 * math.log(10)
    assert (feats[0, : frames[0]].double() - ref).abs()[near].max() < 1e-3


def test_channels_min_duration_and_dtypes():
    wav = _clips([3000, 3000])
    stereo = torch.stack(wav)
    assert torch.equal(fbank(stereo, **SSAST), fbank(wav[0], **SSAST))  # channel -1 -> 0
    assert torch.equal(fbank(stereo, channel=1, **SSAST), fbank(wav[1], **SSAST))
    assert fbank(wav[0], min_duration=1.0, **SSAST).shape == (0, 128)
    feats, frames = fbank_batch([wav[0], _clips([20000])[0]], min_duration=1.0, **SSAST)
    assert frames.tolist() == [0, 123] and (feats[0] == 0).all()
    half = fbank(wav[0].half(), **SSAST)
    assert half.dtype == torch.float32
    assert fbank(wav[0].double(), **SSAST).dtype == torch.float64


BAD_INPUT = [
    (torch.full((1000,), float("nan")), {}, "NaN or Inf"),
    (torch.tensor([0.0] * 500 + [float("inf")] * 500), {}, "NaN or Inf"),
    (torch.zeros(1000, dtype=torch.int16), {}, "floating-point"),
    (torch.zeros(2, 2, 1000), {}, r"\[T\] or \[C, T\]"),
    (np.zeros(1000, np.float32), {}, "torch.Tensor"),
    (torch.zeros(399), {}, "too short"),
    (torch.zeros(1000), dict(frame_shift=-10), "frame_shift"),
    (torch.zeros(1000), dict(num_mel_bins=0), "num_mel_bins"),
    (torch.zeros(1000), dict(low_freq=4000, high_freq=3000), "low_freq"),
    (torch.zeros(1000), dict(high_freq=9000), "high_freq"),
    (torch.zeros(1000), dict(window_type="kaiser"), "window_type"),
    (torch.zeros(1000), dict(preemphasis_coefficient=1.5), "preemphasis"),
    (torch.zeros(1000), dict(frame_length=0.01), "frame_length"),
    (torch.zeros(1000), dict(sample_frequency=0), "sample_frequency"),
    (torch.zeros(1000), dict(dither=float("nan")), "finite"),
    (torch.zeros(1000), dict(vtln_warp=0.9, vtln_low=10), "VTLN"),
    (torch.zeros(1000), dict(round_to_power_of_two=False, frame_length=25.0625), "even"),
    (torch.zeros(1, 1000), dict(channel=1), "channel"),
    (torch.zeros(1000), dict(backend="cuda"), "backend"),
]


@pytest.mark.parametrize("wav,kwargs,match", BAD_INPUT, ids=lambda x: str(x)[:30])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_raises_value_error(backend, wav, kwargs, match):
    kwargs = {"backend": backend, **kwargs}
    with pytest.raises(ValueError, match=match):
        fbank(wav, **kwargs)


def test_bad_batches():
    with pytest.raises(ValueError, match="clip 1: waveform too short"):
        fbank_batch([torch.zeros(1000), torch.zeros(300)])
    with pytest.raises(ValueError, match="lengths must lie"):
        fbank_batch(torch.zeros(2, 1000), [1000, 1001])
    with pytest.raises(ValueError, match="NaN or Inf samples \\(clip 1\\)"):
        fbank_batch([torch.zeros(1000), torch.full((1000,), float("nan"))])
    with pytest.raises(ValueError, match="empty"):
        fbank_batch([])
    with pytest.raises(TypeError):
        fbank(torch.zeros(1000), nonsense_option=1)


def test_resolve_backend_choices():
    """auto on the CPU: the C++ kernel when built (float32 and float64), torch when forced pure;
    explicit backends that cannot run the input are clear errors."""
    from ssast_fast.features.dispatch import resolve_backend

    wave = torch.zeros(1, 16000)
    assert resolve_backend(wave) == resolve_backend(wave.double()) == ("cpp" if _ext.available() else "torch")
    with _ext.pure():
        assert resolve_backend(wave) == "torch"
    assert resolve_backend(wave, "torch", FbankOptions(num_mel_bins=40)) == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend(wave, "kaldi")
    with pytest.raises(ValueError, match="float64"):
        resolve_backend(wave.double(), "triton")
