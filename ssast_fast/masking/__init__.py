"""Masked-patch sampling: reference-exact generators (C++ with a pure-Python fallback)."""
from ssast_fast.masking.exact import batch_masks, gen_maskid_frame, gen_maskid_patch

__all__ = ["batch_masks", "gen_maskid_frame", "gen_maskid_patch"]
