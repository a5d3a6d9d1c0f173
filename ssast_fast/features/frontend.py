"""The SSAST front end as a module: waveforms -> normalized log-mel model input (SPEC.md 1)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ssast_fast.features.dispatch import _as_batch, fbank_batch


def _mask_along(x: torch.Tensor, axis: int, mask_param: int,
                generator: torch.Generator | None) -> torch.Tensor:
    """One mask per clip along ``axis`` of [B, T, F], torchaudio mask_along_axis semantics.

    Width ``int(u1 * mask_param)`` and start ``int(u2 * (size - u1 * mask_param))`` with u1, u2
    uniform in [0, 1), drawn in float32; masked entries become 0.
    """
    size = x.shape[axis]
    u = torch.rand((x.shape[0], 2), generator=generator, device=x.device, dtype=torch.float32)
    value = u[:, 0] * mask_param
    start = (u[:, 1] * (size - value)).long()
    end = start + value.long()
    pos = torch.arange(size, device=x.device)
    hit = (pos >= start[:, None]) & (pos < end[:, None])  # [B, size]
    hit = hit[:, :, None] if axis == 1 else hit[:, None, :]
    return x.masked_fill(hit, 0.0)


class FrontEnd(nn.Module):
    """Batch of waveforms -> SSAST model input ``[B, target_length, num_mel_bins]``.

    Per clip: remove the mean of its valid samples; Kaldi fbank with the SSAST options
    (hanning window, 10 ms shift, htk_compat, no energy, no dither); cut or zero-pad to
    ``target_length`` frames; in training mode only, one frequency mask of width U[0, freqm)
    and one time mask of width U[0, timem) (value 0); then ``(x - mean) / (2 * std)``, so
    padded frames end at ``-mean / (2 std)``.

    Args:
        sample_rate: Hz. num_mel_bins: mel bins. target_length: output frames.
        mean, std: dataset statistics (defaults: AudioSet + LibriSpeech pretraining).
        freqm, timem: SpecAugment mask parameters (0 disables).
        backend: fbank backend ("auto" | "torch" | "cpp" | "triton").
    """

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 128,
                 target_length: int = 1024, mean: float = -4.2677393, std: float = 4.5689974,
                 freqm: int = 0, timem: int = 0, backend: str = "auto") -> None:
        super().__init__()
        if target_length <= 0 or freqm < 0 or timem < 0 or std <= 0:
            raise ValueError("need target_length > 0, freqm >= 0, timem >= 0 and std > 0")
        self.sample_rate, self.num_mel_bins, self.target_length = sample_rate, num_mel_bins, \
            target_length
        self.mean, self.std, self.freqm, self.timem = mean, std, freqm, timem
        self.backend = backend

    def fbank_kwargs(self) -> dict:
        """The fbank options SSAST uses."""
        return dict(htk_compat=True, sample_frequency=self.sample_rate, use_energy=False,
                    window_type="hanning", num_mel_bins=self.num_mel_bins, dither=0.0,
                    frame_shift=10)

    def forward(self, waveforms: torch.Tensor | Sequence[torch.Tensor],
                lengths: torch.Tensor | Sequence[int] | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """waveforms [B, T] (+ lengths [B]) or a list of 1-D clips, in [-1, 1] -> [B, L, bins].

        ``generator`` drives the SpecAugment draws (training mode only).
        """
        waves, lengths = _as_batch(waveforms, lengths)
        waves = waves.float() if waves.dtype != torch.float64 else waves
        valid = torch.arange(waves.shape[1], device=waves.device) < lengths.to(waves.device)[:,
                                                                                            None]
        means = (waves * valid).sum(1, keepdim=True) / lengths.to(waves.device)[:, None]
        waves = torch.where(valid, waves - means.to(waves.dtype), waves)
        feats, _ = fbank_batch(waves, lengths, backend=self.backend, **self.fbank_kwargs())
        n = feats.shape[1]
        if n >= self.target_length:
            feats = feats[:, : self.target_length]
        else:
            feats = torch.nn.functional.pad(feats, (0, 0, 0, self.target_length - n))
        if self.training and self.freqm > 0:
            feats = _mask_along(feats, 2, self.freqm, generator)
        if self.training and self.timem > 0:
            feats = _mask_along(feats, 1, self.timem, generator)
        return (feats - self.mean) / (self.std * 2)
