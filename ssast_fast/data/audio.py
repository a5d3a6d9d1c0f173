"""Audio I/O without torchaudio: soundfile decoding, mono downmix, band-limited resampling.

Resampling method: windowed-sinc polyphase filtering. With ``g = gcd(orig, new)`` the rate
ratio is reduced to ``up = new / g`` output phases per ``down = orig / g`` input samples. Output
sample ``n`` sits at input time ``n * orig / new``; it is a dot product of the input with a
low-pass sinc (cut-off ``rolloff * min(orig, new) / 2`` Hz) under a Hann-squared (cos^2)
window spanning ``lowpass_width`` zero crossings on each side. The ``up`` distinct phase
filters are built once and applied with one strided ``conv1d`` (stride ``down``), so the cost
is one small convolution per clip; output length is ``ceil(len * new / orig)``.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
import torch


class AudioDecodeError(RuntimeError):
    """A file that is missing or that soundfile cannot decode."""


@lru_cache(maxsize=16)
def _phase_filters(orig: int, new: int, lowpass_width: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Polyphase filters ``[up, 1, K]`` (float64) for orig -> new Hz and the half-width in input samples."""
    g = math.gcd(orig, new)
    down, up = orig // g, new // g
    cutoff = min(down, up) * rolloff  # in units of the reduced rates (Nyquist of the slower side * 2)
    half = int(math.ceil(lowpass_width * down / cutoff))
    # taps cover input offsets -half .. half + down - 1 relative to floor(n * down / up) blocks
    k = torch.arange(-half, half + down, dtype=torch.float64)  # input sample offsets
    phase = torch.arange(up, dtype=torch.float64)[:, None] * down / up  # fractional start of each phase
    t = (k[None, :] - phase) * cutoff / down  # distance in zero crossings of the low-pass sinc
    t = t.clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / (2 * lowpass_width)) ** 2
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t).where(t != 0, torch.ones_like(t)))
    filt = sinc * window * cutoff / down
    return filt[:, None, :], half


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int, *, lowpass_width: int = 6,
             rolloff: float = 0.99) -> torch.Tensor:
    """Resample ``wave`` [..., T] from ``orig_sr`` to ``new_sr`` Hz -> [..., ceil(T * new / orig)].

    Windowed-sinc polyphase filter (module docstring). Float dtype preserved; identity when the
    rates match.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return wave
    g = math.gcd(orig_sr, new_sr)
    down, up = orig_sr // g, new_sr // g
    filt, half = _phase_filters(orig_sr, new_sr, lowpass_width, rolloff)
    shape = wave.shape
    x = wave.reshape(-1, 1, shape[-1])
    n = shape[-1]
    x = torch.nn.functional.pad(x.to(torch.float64), (half, half + down))
    y = torch.nn.functional.conv1d(x, filt.to(x.device), stride=down)  # [N, up, blocks]
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    out_len = int(math.ceil(n * up / down))
    return y[:, :out_len].to(wave.dtype).reshape(*shape[:-1], out_len)


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> torch.Tensor:
    """Read a WAV/FLAC/OGG file -> mono float32 waveform [T] in [-1, 1] at ``sample_rate`` Hz.

    Channels are averaged; a file at another rate is resampled with :func:`resample`.
    Raises AudioDecodeError for a missing, empty or undecodable file.
    """
    import soundfile as sf

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioDecodeError(f"audio file not found: {path}")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioDecodeError(f"cannot decode audio file {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(f"audio file has no samples: {path}")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)))
    if not torch.isfinite(wave).all():
        raise AudioDecodeError(f"audio file has non-finite samples: {path}")
    return resample(wave, int(sr), sample_rate)
