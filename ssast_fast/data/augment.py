"""Augmentations of SPEC.md section 1: mixup (1.8, waveforms) and noise (1.7, spectrograms)."""
from __future__ import annotations

import torch


def mix_waveforms(wave1: torch.Tensor, wave2: torch.Tensor, lam: float) -> torch.Tensor:
    """Mixup of two mono waveforms [T1], [T2] -> [T1].

    Each is mean-removed, ``wave2`` is cut or zero-padded to ``wave1``'s length, the mix is
    ``lam * wave1 + (1 - lam) * wave2`` and its mean is removed again.
    """
    w1 = wave1 - wave1.mean()
    w2 = wave2 - wave2.mean()
    n = w1.shape[0]
    if w2.shape[0] >= n:
        w2 = w2[:n]
    else:
        w2 = torch.nn.functional.pad(w2, (0, n - w2.shape[0]))
    mix = lam * w1 + (1 - lam) * w2
    return mix - mix.mean()


def add_noise(feats: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise augmentation on normalized spectrograms [B, T, F] -> [B, T, F].

    Per clip: add ``U[0,1)^(T x F) * u / 10`` with one ``u ~ U[0,1)``, then roll along time by an
    integer shift uniform in [-10, 10) (``torch.roll`` semantics: row t moves to t + shift).
    Draws come from ``generator`` (default: torch's global generator) on ``feats.device``.
    """
    b, t, _ = feats.shape
    dev = feats.device
    scale = torch.rand((b, 1, 1), generator=generator, device=dev, dtype=torch.float32) / 10
    noisy = feats + torch.rand(feats.shape, generator=generator, device=dev, dtype=torch.float32).to(feats.dtype) * scale.to(feats.dtype)
    shift = torch.randint(-10, 10, (b,), generator=generator, device=dev)
    src = (torch.arange(t, device=dev)[None, :] - shift[:, None]) % t  # out[t] = in[t - shift]
    return torch.gather(noisy, 1, src[:, :, None].expand_as(noisy))
