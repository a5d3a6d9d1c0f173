"""Public fbank entry points: input checks, backend choice (:func:`resolve_backend`), batching.

Backends (``backend=``):

* ``"torch"``: :func:`ssast_fast.features.kaldi.fbank_torch`, any device, float32 or float64.
* ``"cpp"``: the C++ kernel of ``ssast_fast._C`` (CPU tensors, float32 or float64).
* ``"triton"``: the fused Triton kernels of :mod:`ssast_fast.features.fbank_triton` (CUDA
  tensors, or CPU tensors under Triton's interpreter); float32 in and out (float64 transform
  inside), power-of-two FFT sizes from 256 to 2048.
* ``"auto"``: on CUDA, triton for tensors below float64 and settings the kernel supports, once
  it passed its self-check for these settings on the device (:func:`fbank_mismatch` against the
  float64 torch path; :mod:`ssast_fast.ops.dispatch`), torch otherwise; on the CPU, cpp when the
  extension is built, torch otherwise. Every decision is recorded in
  :func:`ssast_fast.ops.dispatch.record`.
"""
from __future__ import annotations

import functools
import math
import zlib
from typing import Optional, Sequence

import torch

from ssast_fast import _ext
from ssast_fast.features import fbank_triton
from ssast_fast.features.kaldi import (FbankOptions, dither_noise, fbank_torch, feature_window,
                                       mel_banks)
from ssast_fast.ops import dispatch
from ssast_fast.ops._triton_common import HAS_TRITON, TRITON_INTERPRET

__all__ = ["BACKENDS", "fbank", "fbank_batch", "fbank_mismatch", "resolve_backend"]

BACKENDS = ("auto", "torch", "cpp", "triton")


def resolve_backend(waves: torch.Tensor, backend: str = "auto",
                    options: Optional[FbankOptions] = None) -> str:
    """The concrete backend ("torch" | "cpp" | "triton") that :func:`fbank_batch` uses for
    ``waves`` (its device; float64 input computes in float64, anything else in float32) with
    ``options`` (default: torchaudio's defaults). ``auto``: see the module docstring.

    Raises ValueError / RuntimeError when an explicit backend cannot run this input here.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    o = FbankOptions() if options is None else options
    device = waves.device
    dtype = torch.float64 if waves.dtype == torch.float64 else torch.float32
    if backend == "auto":
        return _auto_backend(o, device, dtype)
    if backend == "cpp":
        if device.type != "cpu":
            raise ValueError(f"backend 'cpp' needs a CPU tensor, got device {device}")
        if not _ext.available():
            raise RuntimeError("backend 'cpp' needs the compiled extension ssast_fast._C")
    if backend == "triton":
        if dtype == torch.float64:
            raise ValueError("backend 'triton' computes in float32; use 'torch' for float64")
        if device.type != "cuda" and not TRITON_INTERPRET:
            raise ValueError(f"backend 'triton' needs a CUDA tensor, got device {device}")
        if not HAS_TRITON:
            raise RuntimeError("backend 'triton' needs the triton package; install it with "
                               "`pip install 'ssast-fast[triton]'`")
        if not fbank_triton.supports(o):
            raise ValueError(f"backend 'triton' needs a power-of-two FFT size in "
                             f"{fbank_triton.FFT_SIZES}, got {o.padded_window_size}; use 'torch'")
    return backend


def _settings_key(o: FbankOptions) -> str:
    """A short, stable name of the options for the dispatch record."""
    return (f"{o.sample_frequency:g} Hz, {o.num_mel_bins} bins, FFT {o.padded_window_size}, "
            f"options {zlib.crc32(repr(o).encode()):08x}")


def _auto_backend(o: FbankOptions, device: torch.device, dtype: torch.dtype) -> str:
    """``auto``: the self-checked Triton kernel on CUDA where it applies, else torch; on the CPU
    the C++ kernel when built, else torch."""
    if not dispatch.kernel_device(device):
        which = "cpp" if device.type == "cpu" and _ext.available() else "torch"
        dispatch.note("fbank", f"{device.type}", which, "the C++ kernel (extension built)"
                      if which == "cpp" else "the extension is not built (or SSAST_FAST_PURE=1)")
        return which
    runs = (device.type == "cuda") != TRITON_INTERPRET
    if dtype == torch.float64 or not runs or not fbank_triton.supports(o):
        dispatch.note("fbank", f"{device.type}, {dtype}, {_settings_key(o)}", "torch",
                      "float64 input, or the Triton kernel cannot run these settings here")
        return "torch"
    return dispatch.resolve("fbank", device, kernel="triton", fallback="torch",
                            kernel_name="Triton fbank kernel", check_key=_settings_key(o),
                            check=lambda: _self_check(o, device))


def fbank_mismatch(out: torch.Tensor, ref64: torch.Tensor, ref32: torch.Tensor) -> Optional[str]:
    """None when ``out`` agrees with the float64 result ``ref64`` by the golden fixtures' rule,
    else what differs: max |out - ref64| <= max(2 x that of the float32 torch path ``ref32``,
    1e-4), and <= 1e-3 on values within 60 dB of their row's maximum."""
    if out.shape != ref64.shape:
        return f"shape {tuple(out.shape)}, expected {tuple(ref64.shape)}"
    err = (out.double() - ref64).abs()
    atol = max(2 * (ref32.double() - ref64).abs().max().item(), 1e-4)
    if not err.max().item() <= atol:  # also catches NaN
        return f"max error {err.max().item():.3g} vs float64 > {atol:.3g}"
    near = ref64 >= ref64.amax(dim=-1, keepdim=True) - 6 * math.log(10)
    if near.any() and not err[near].max().item() <= 1e-3:
        return f"max error {err[near].max().item():.3g} within 60 dB of the peak > 1e-3"
    return None


def _self_check(o: FbankOptions, device: torch.device) -> Optional[str]:
    """The Triton kernel against the float64 torch path on two noise clips (about 0.3 s and one
    window and a half) with these settings; None, or what disagreed."""
    lengths = torch.tensor([o.window_size + 30 * o.window_shift, o.window_size + o.window_size // 2])
    g = torch.Generator().manual_seed(0)
    waves = torch.randn(2, int(lengths[0]), generator=g, dtype=torch.float64) * 0.1
    ref64 = _run("torch", o, waves.to(device), lengths, None)
    ref32 = _run("torch", o, waves.float().to(device), lengths, None)
    return fbank_mismatch(_run("triton", o, waves.float().to(device), lengths, None), ref64, ref32)


def _compute_dtype(x: torch.Tensor, what: str) -> torch.dtype:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must have a floating-point dtype, got {x.dtype} "
                         "(convert integer PCM with e.g. x.float() / 32768)")
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@functools.lru_cache(maxsize=32)
def _plan(o: FbankOptions):
    """The C++ FbankPlan for these options (float64 window, FFT plan, sparse mel weights)."""
    return _ext.get().FbankPlan(
        feature_window(o, torch.float64), mel_banks(o), o.window_shift, o.padded_window_size,
        o.snip_edges, o.remove_dc_offset, float(o.preemphasis_coefficient), o.raw_energy,
        float(o.energy_floor), o.use_energy, o.htk_compat, o.use_power, o.use_log_fbank)


def _run(backend: str, o: FbankOptions, waves: torch.Tensor, lengths: torch.Tensor,
         noise: torch.Tensor | None) -> torch.Tensor:
    """[B, T] waves with valid lengths (each >= one window) -> [B, F_max, bins], zero tails."""
    if backend == "cpp":
        out, _ = _plan(o).forward(waves, lengths, noise)
        return out
    if backend == "triton":
        return fbank_triton.fbank_triton(waves, lengths, o, noise)
    frames = [o.num_frames(int(n)) for n in lengths.tolist()]
    out = waves.new_zeros((len(frames), max(frames), o.num_bins))
    for b, (n, f) in enumerate(zip(lengths.tolist(), frames)):
        out[b, :f] = fbank_torch(waves[b, :n], o, None if noise is None else noise[b, :f])
    return out


def _as_batch(waveforms: torch.Tensor | Sequence[torch.Tensor],
              lengths: torch.Tensor | Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalize the batch input to ([B, T] tensor, int64 CPU lengths [B])."""
    if isinstance(waveforms, torch.Tensor):
        _compute_dtype(waveforms, "waveforms")
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be [B, T] (or a list of 1-D tensors), "
                             f"got shape {tuple(waveforms.shape)}")
        b, t = waveforms.shape
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.int64)
        lengths = torch.as_tensor(lengths).to("cpu")
        if lengths.shape != (b,) or lengths.is_floating_point():
            raise ValueError(f"lengths must be {b} integers, got {lengths!r}")
        lengths = lengths.long()
        if ((lengths < 0) | (lengths > t)).any():
            raise ValueError(f"lengths must lie in [0, {t}], got {lengths.tolist()}")
        return waveforms, lengths
    if lengths is not None:
        raise ValueError("lengths is only for a [B, T] tensor; a list carries its own lengths")
    clips = list(waveforms)
    if not clips:
        raise ValueError("waveforms is an empty list")
    for i, c in enumerate(clips):
        _compute_dtype(c, f"waveforms[{i}]")
        if c.dim() != 1:
            raise ValueError(f"waveforms[{i}] must be 1-D, got shape {tuple(c.shape)}")
        if c.device != clips[0].device:
            raise ValueError("all clips must be on one device")
    dtype = functools.reduce(torch.promote_types, [c.dtype for c in clips])
    lengths = torch.tensor([c.shape[0] for c in clips], dtype=torch.int64)
    waves = clips[0].new_zeros((len(clips), int(lengths.max())), dtype=dtype)
    for i, c in enumerate(clips):
        waves[i, : c.shape[0]] = c
    return waves, lengths


def _check_finite(waves: torch.Tensor, lengths: torch.Tensor) -> None:
    # A finite sum proves every sample finite (NaN and Inf propagate); only a non-finite sum
    # (bad samples, junk in the padding, or overflow) needs the element-wise check.
    if bool(torch.isfinite(waves.sum())):
        return
    valid = torch.arange(waves.shape[1], device=waves.device) < lengths.to(waves.device)[:, None]
    bad = (~torch.isfinite(waves) & valid).any(1)
    if bad.any():
        raise ValueError(f"waveform contains NaN or Inf samples (clip {int(bad.nonzero()[0])})")


def fbank_batch(waveforms: torch.Tensor | Sequence[torch.Tensor],
                lengths: torch.Tensor | Sequence[int] | None = None, *, backend: str = "auto",
                generator: torch.Generator | None = None, **kwargs
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Kaldi filterbanks of a batch of mono clips.

    Args:
        waveforms: [B, T] float tensor with ``lengths`` (valid samples per clip; default T),
            or a list of 1-D float tensors.
        backend: "auto" | "torch" | "cpp" | "triton" (module docstring).
        generator: random source for ``dither`` (clip 0's frames are drawn first, so row i
            equals ``fbank`` of clip i with the generator in the same state).
        **kwargs: torchaudio.compliance.kaldi.fbank options (:class:`FbankOptions`);
            ``channel`` does not apply.
    Returns:
        features [B, F_max, num_mel_bins + use_energy] (float64 for float64 input, float32
        otherwise) with rows past ``num_frames[b]`` zero, and num_frames int64 [B] on the CPU.
    """
    o = FbankOptions(**kwargs)
    waves, lengths = _as_batch(waveforms, lengths)
    dtype = _compute_dtype(waves, "waveforms")
    waves = waves.to(dtype)
    backend = resolve_backend(waves, backend, o)
    for b, n in enumerate(lengths.tolist()):
        try:
            o.check_length(n)
        except ValueError as e:
            raise ValueError(f"clip {b}: {e}") from None
    _check_finite(waves, lengths)
    keep = [not o.too_short_for_min_duration(n) for n in lengths.tolist()]
    frames = torch.tensor([o.num_frames(n) if k else 0 for n, k in zip(lengths.tolist(), keep)],
                          dtype=torch.int64)
    f_max = int(frames.max())
    if f_max == 0:
        return waves.new_zeros((waves.shape[0], 0, o.num_bins)), frames
    noise = None
    if o.dither != 0.0:
        noise = waves.new_zeros((waves.shape[0], f_max, o.window_size))
        for b, n in enumerate(lengths.tolist()):
            if keep[b]:
                noise[b, : frames[b]] = dither_noise(o, n, dtype, waves.device, generator)
    if all(keep):
        out = _run(backend, o, waves, lengths, noise)
    else:  # clips shorter than min_duration give no frames
        idx = torch.tensor(keep).nonzero().flatten()
        sub = _run(backend, o, waves[idx.to(waves.device)], lengths[idx],
                   None if noise is None else noise[idx.to(waves.device)])
        out = waves.new_zeros((waves.shape[0], f_max, o.num_bins))
        out[idx.to(waves.device)] = sub
    if o.subtract_mean:
        valid = (torch.arange(f_max) < frames[:, None]).to(out.device)[..., None]
        mean = out.sum(1, keepdim=True) / frames.clamp_min(1).to(out.device)[:, None, None]
        out = torch.where(valid, out - mean.to(out.dtype), out)
    return out, frames


def fbank(waveform: torch.Tensor, *, backend: str = "auto",
          generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
    """``torchaudio.compliance.kaldi.fbank`` with the same keyword names, defaults, numbers.

    Args:
        waveform: [T] or [C, T] float tensor; channel ``max(channel, 0)`` is used, as in
            torchaudio. float16/bfloat16 are computed in float32.
        backend: "auto" | "torch" | "cpp" | "triton" (module docstring).
        generator: random source for ``dither``.
        **kwargs: the torchaudio options (:class:`FbankOptions`).
    Returns:
        [frames, num_mel_bins + use_energy] log-mel energies (natural log), float64 for
        float64 input, float32 otherwise. A clip shorter than ``min_duration`` gives 0 frames.
    Raises:
        ValueError: bad options or input, or fewer samples than one window.
    """
    o = FbankOptions(**kwargs)
    _compute_dtype(waveform, "waveform")
    if waveform.dim() == 1:
        waveform = waveform[None]
    if waveform.dim() != 2:
        raise ValueError(f"waveform must be [T] or [C, T], got shape {tuple(waveform.shape)}")
    channel = max(o.channel, 0)
    if channel >= waveform.shape[0]:
        raise ValueError(f"channel {o.channel} out of range for {waveform.shape[0]} channel(s)")
    kwargs.pop("channel", None)
    out, frames = fbank_batch(waveform[channel][None], backend=backend, generator=generator,
                              **kwargs)
    return out[0, : int(frames[0])]
