"""Kaldi-compatible log-mel filterbanks (torchaudio.compliance.kaldi.fbank) and the SSAST front end."""
from ssast_fast.features.dispatch import fbank, fbank_batch
from ssast_fast.features.frontend import FrontEnd
from ssast_fast.features.kaldi import FbankOptions

__all__ = ["fbank", "fbank_batch", "FrontEnd", "FbankOptions"]
