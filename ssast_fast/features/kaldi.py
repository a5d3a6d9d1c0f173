"""Kaldi fbank semantics (as in ``torchaudio.compliance.kaldi.fbank``): options, tables, torch path.

Everything here is the readable reference every other backend is tested against:

* :class:`FbankOptions` holds torchaudio's keyword arguments with their defaults and checks them.
* :func:`feature_window` and :func:`mel_banks` build the window and the mel matrix exactly as
  torchaudio does (same dtypes, same order of float32 operations), so every backend can share them.
* :func:`fbank_torch` computes one clip with plain torch ops.

Units: sample counts in samples, ``frame_length``/``frame_shift`` in milliseconds, frequencies in
Hz, log values in natural-log units (10 dB of power = ln 10).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import torch

EPSILON = float(torch.finfo(torch.float32).eps)  # the log floor, also for float64 input
WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "blackman")


@dataclasses.dataclass(frozen=True)
class FbankOptions:
    """torchaudio.compliance.kaldi.fbank's keyword arguments, with the same names and defaults."""

    blackman_coeff: float = 0.42
    channel: int = -1
    dither: float = 0.0
    energy_floor: float = 1.0
    frame_length: float = 25.0
    frame_shift: float = 10.0
    high_freq: float = 0.0
    htk_compat: bool = False
    low_freq: float = 20.0
    min_duration: float = 0.0
    num_mel_bins: int = 23
    preemphasis_coefficient: float = 0.97
    raw_energy: bool = True
    remove_dc_offset: bool = True
    round_to_power_of_two: bool = True
    sample_frequency: float = 16000.0
    snip_edges: bool = True
    subtract_mean: bool = False
    use_energy: bool = False
    use_log_fbank: bool = True
    use_power: bool = True
    vtln_high: float = -500.0
    vtln_low: float = 100.0
    vtln_warp: float = 1.0
    window_type: str = "povey"

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def window_size(self) -> int:
        """Samples per frame, ``int(sample_frequency * frame_length / 1000)``."""
        return int(self.sample_frequency * self.frame_length * 0.001)

    @property
    def window_shift(self) -> int:
        """Samples between frame starts."""
        return int(self.sample_frequency * self.frame_shift * 0.001)

    @property
    def padded_window_size(self) -> int:
        """FFT length: the next power of two of the window (or the window itself)."""
        w = self.window_size
        return 1 << (w - 1).bit_length() if self.round_to_power_of_two else w

    @property
    def num_bins(self) -> int:
        """Output columns: mel bins plus one when the energy is appended."""
        return self.num_mel_bins + int(self.use_energy)

    def num_frames(self, num_samples: int) -> int:
        """Frames for a clip of ``num_samples`` (Kaldi's count; the caller checks the minimum)."""
        w, s = self.window_size, self.window_shift
        if self.snip_edges:
            return 1 + (num_samples - w) // s if num_samples >= w else 0
        return (num_samples + s // 2) // s

    def check_length(self, num_samples: int) -> None:
        """Raise where torchaudio asserts: a clip shorter than one window."""
        if num_samples < self.window_size:
            raise ValueError(
                f"waveform too short: {num_samples} samples, fewer than one window of "
                f"{self.window_size} samples (frame_length={self.frame_length} ms at "
                f"{self.sample_frequency} Hz)"
            )

    def too_short_for_min_duration(self, num_samples: int) -> bool:
        """torchaudio returns no frames for clips shorter than ``min_duration`` seconds."""
        return num_samples < self.min_duration * self.sample_frequency


def _validate(o: FbankOptions) -> None:
    def bad(msg: str) -> None:
        raise ValueError(f"fbank option: {msg}")

    for name in ("htk_compat", "raw_energy", "remove_dc_offset", "round_to_power_of_two",
                 "snip_edges", "subtract_mean", "use_energy", "use_log_fbank", "use_power"):
        if not isinstance(getattr(o, name), bool):
            bad(f"{name} must be a bool, got {getattr(o, name)!r}")
    for f in dataclasses.fields(o):
        v = getattr(o, f.name)
        if f.type == "float" and not (isinstance(v, numbers.Real) and not isinstance(v, bool)
                                      and math.isfinite(v)):
            bad(f"{f.name} must be a finite number, got {v!r}")
    for name in ("num_mel_bins", "channel"):
        v = getattr(o, name)
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            bad(f"{name} must be an int, got {v!r}")
    if o.window_type not in WINDOW_TYPES:
        bad(f"window_type must be one of {WINDOW_TYPES}, got {o.window_type!r}")
    if o.sample_frequency <= 0:
        bad(f"sample_frequency must be > 0, got {o.sample_frequency}")
    if o.frame_shift <= 0 or o.window_shift <= 0:
        bad(f"frame_shift must give a positive shift, got {o.frame_shift} ms "
            f"({o.window_shift} samples)")
    if o.window_size < 2:
        bad(f"frame_length must give a window of at least 2 samples, got {o.frame_length} ms "
            f"({o.window_size} samples)")
    if o.padded_window_size % 2:
        bad(f"the FFT size {o.padded_window_size} must be even: use round_to_power_of_two "
            "or change frame_length")
    if not 0.0 <= o.preemphasis_coefficient <= 1.0:
        bad(f"preemphasis_coefficient must be in [0, 1], got {o.preemphasis_coefficient}")
    if o.dither < 0:
        bad(f"dither must be >= 0, got {o.dither}")
    if o.energy_floor < 0:
        bad(f"energy_floor must be >= 0, got {o.energy_floor}")
    if o.num_mel_bins <= 3:
        bad(f"num_mel_bins must be at least 4, got {o.num_mel_bins}")
    nyquist = 0.5 * o.sample_frequency
    high = o.high_freq + nyquist if o.high_freq <= 0.0 else o.high_freq
    if not (0.0 <= o.low_freq < nyquist and 0.0 < high <= nyquist and o.low_freq < high):
        bad(f"need 0 <= low_freq < high_freq <= nyquist; got low_freq {o.low_freq}, "
            f"high_freq {o.high_freq} (-> {high}), nyquist {nyquist}")
    if o.vtln_warp <= 0:
        bad(f"vtln_warp must be > 0, got {o.vtln_warp}")
    if o.vtln_warp != 1.0:
        vhigh = o.vtln_high + nyquist if o.vtln_high < 0.0 else o.vtln_high
        if not (o.low_freq < o.vtln_low < high and 0.0 < vhigh < high and o.vtln_low < vhigh):
            bad(f"bad VTLN cut-offs: vtln_low {o.vtln_low}, vtln_high {o.vtln_high} "
                f"(-> {vhigh}) versus low_freq {o.low_freq}, high_freq {high}")
        lo = o.vtln_low * max(1.0, o.vtln_warp)
        hi = vhigh * min(1.0, o.vtln_warp)
        if not (lo > o.low_freq and hi < high):
            bad(f"vtln_warp {o.vtln_warp} moves the VTLN inflection points outside "
                f"({o.low_freq}, {high})")


# ---------------------------------------------------------------------------------------------
# Tables


def feature_window(o: FbankOptions, dtype: torch.dtype, device: torch.device | str = "cpu"
                   ) -> torch.Tensor:
    """The analysis window, shape [window_size], computed in ``dtype`` like torchaudio."""
    n = o.window_size
    if o.window_type in ("hanning", "povey"):
        w = torch.hann_window(n, periodic=False, device=device, dtype=dtype)
        return w.pow(0.85) if o.window_type == "povey" else w
    if o.window_type == "hamming":
        return torch.hamming_window(n, periodic=False, alpha=0.54, beta=0.46, device=device,
                                    dtype=dtype)
    if o.window_type == "rectangular":
        return torch.ones(n, device=device, dtype=dtype)
    a = 2 * math.pi / (n - 1)  # blackman with Kaldi's coefficient, not torch.blackman_window
    j = torch.arange(n, device=device, dtype=dtype)
    c = o.blackman_coeff
    return c - 0.5 * torch.cos(a * j) + (0.5 - c) * torch.cos(2 * a * j)


def _mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * (1.0 + freq / 700.0).log()


def _inv_mel(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * ((mel / 1127.0).exp() - 1.0)


def _vtln_warp_hz(warp: float, vlow: float, vhigh: float, low: float, high: float,
                  freq: torch.Tensor) -> torch.Tensor:
    """Kaldi's piecewise-linear VTLN warp of ``freq`` (Hz), three segments."""
    lo_knee = vlow * max(1.0, warp)
    hi_knee = vhigh * min(1.0, warp)
    scale = 1.0 / warp
    slope_left = (scale * lo_knee - low) / (lo_knee - low)
    slope_right = (high - scale * hi_knee) / (high - hi_knee)
    out = torch.empty_like(freq)
    # Later assignments win where the regions overlap, as in Kaldi.
    right = freq >= hi_knee
    out[right] = high + slope_right * (freq[right] - high)
    mid = freq < hi_knee
    out[mid] = scale * freq[mid]
    left = freq < lo_knee
    out[left] = low + slope_left * (freq[left] - low)
    outside = (freq < low) | (freq > high)
    out[outside] = freq[outside]
    return out


@functools.lru_cache(maxsize=64)
def _mel_banks_cached(num_bins: int, n_fft: int, sample_frequency: float, low: float,
                      high: float, vtln_low: float, vtln_high: float, warp: float) -> torch.Tensor:
    nyquist = 0.5 * sample_frequency
    high = high + nyquist if high <= 0.0 else high
    vhigh = vtln_high + nyquist if vtln_high < 0.0 else vtln_high
    # float32 throughout, in torchaudio's order of operations (the README explains why).
    f32 = torch.float32
    mel_low = 1127.0 * math.log(1.0 + low / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=f32).unsqueeze(1)
    left = mel_low + b * delta
    center = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    if warp != 1.0:
        left, center, right = (_mel(_vtln_warp_hz(warp, vtln_low, vhigh, low, high, _inv_mel(m)))
                               for m in (left, center, right))
    fft_mel = _mel((sample_frequency / n_fft) * torch.arange(n_fft // 2, dtype=f32)).unsqueeze(0)
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    if warp == 1.0:
        banks = torch.max(torch.zeros(1), torch.min(up, down))
    else:  # warping may reorder the three points: keep only the strict triangle
        banks = torch.zeros_like(up)
        rising = (fft_mel > left) & (fft_mel <= center)
        falling = (fft_mel > center) & (fft_mel < right)
        banks[rising] = up[rising]
        banks[falling] = down[falling]
    return torch.nn.functional.pad(banks, (0, 1))  # the Nyquist bin gets weight 0


def mel_banks(o: FbankOptions) -> torch.Tensor:
    """Mel weights, float32 [num_mel_bins, padded_window_size // 2 + 1] (read-only, cached)."""
    return _mel_banks_cached(o.num_mel_bins, o.padded_window_size, float(o.sample_frequency),
                             float(o.low_freq), float(o.high_freq), float(o.vtln_low),
                             float(o.vtln_high), float(o.vtln_warp))


def empty_mel_columns(o: FbankOptions) -> list[int]:
    """Mel filters that contain no FFT bin (their output column is always at the floor)."""
    return torch.nonzero(mel_banks(o).sum(1) == 0).flatten().tolist()


# ---------------------------------------------------------------------------------------------
# Frames and the pure-torch path


def frame_indices(o: FbankOptions, num_samples: int, device: torch.device | str = "cpu"
                  ) -> torch.Tensor:
    """Sample index of every frame element, int64 [frames, window_size].

    With ``snip_edges=False`` frame ``i`` starts at ``i*shift - (window//2 - shift//2)`` and the
    signal is mirrored at both ends with the edge sample repeated (x[-1] = x[0], x[n] = x[n-1]).
    """
    f = o.num_frames(num_samples)
    start = torch.arange(f, device=device) * o.window_shift
    if not o.snip_edges:
        start = start - (o.window_size // 2 - o.window_shift // 2)
    idx = start[:, None] + torch.arange(o.window_size, device=device)
    if not o.snip_edges:
        idx = torch.where(idx < 0, -1 - idx, idx)
        idx = torch.where(idx >= num_samples, 2 * num_samples - 1 - idx, idx)
    return idx


def dither_noise(o: FbankOptions, num_samples: int, dtype: torch.dtype, device: torch.device,
                 generator: torch.Generator | None) -> torch.Tensor | None:
    """Gaussian dither, one draw per frame element [frames, window_size], or None."""
    if o.dither == 0.0:
        return None
    shape = (o.num_frames(num_samples), o.window_size)
    return torch.randn(shape, generator=generator, device=device, dtype=dtype) * o.dither


def _log_energy(frames: torch.Tensor, o: FbankOptions) -> torch.Tensor:
    eps = torch.tensor(EPSILON, dtype=frames.dtype, device=frames.device)
    e = torch.max(frames.pow(2).sum(1), eps).log()
    if o.energy_floor == 0.0:
        return e
    return e.clamp_min(math.log(o.energy_floor))


def fbank_torch(wave: torch.Tensor, o: FbankOptions, noise: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Filterbank of one clip with torch ops.

    Args:
        wave: [num_samples] float32/float64, at least one window long.
        o: the options.
        noise: optional dither already scaled, [frames, window_size] (see :func:`dither_noise`).
    Returns:
        [frames, num_bins] in ``wave.dtype``; log-mel in natural-log units (when use_log_fbank).
    """
    dtype, device = wave.dtype, wave.device
    eps = torch.tensor(EPSILON, dtype=dtype, device=device)
    frames = wave[frame_indices(o, wave.shape[0], device)]  # [F, W]
    if noise is not None:
        frames = frames + noise
    if o.remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)
    if o.raw_energy:
        energy = _log_energy(frames, o)
    if o.preemphasis_coefficient != 0.0:
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = frames - o.preemphasis_coefficient * previous
    frames = frames * feature_window(o, dtype, device)
    frames = torch.nn.functional.pad(frames, (0, o.padded_window_size - o.window_size))
    if not o.raw_energy:
        energy = _log_energy(frames, o)
    spectrum = torch.fft.rfft(frames).abs()
    if o.use_power:
        spectrum = spectrum.pow(2.0)
    mel = torch.mm(spectrum, mel_banks(o).to(device=device, dtype=dtype).T)
    if o.use_log_fbank:
        mel = torch.max(mel, eps).log()
    if o.use_energy:
        parts = (mel, energy[:, None]) if o.htk_compat else (energy[:, None], mel)
        mel = torch.cat(parts, dim=1)
    return mel
