"""Kaldi-compatible log-mel filterbanks (``torchaudio.compliance.kaldi.fbank``) and the SSAST front end.

- ``kaldi``: the options (:class:`FbankOptions`), window and mel tables, and the readable torch
  path every backend is tested against.
- ``fbank_triton``: the Triton kernels (spectrum, mel + log) for CUDA.
- ``dispatch``: the public entry points :func:`fbank` / :func:`fbank_batch` (input checks,
  batching) and the family's backend choice ``resolve_backend`` (torch, C++, Triton).
- ``frontend``: :class:`FrontEnd`, waveforms -> normalized model input (SpecAugment in training).
"""
from ssast_fast.features.dispatch import fbank, fbank_batch
from ssast_fast.features.frontend import FrontEnd
from ssast_fast.features.kaldi import FbankOptions

__all__ = ["fbank", "fbank_batch", "FrontEnd", "FbankOptions"]
