"""Masked-patch sampling: reference-exact generators (and, later, a batched fast sampler)."""
from ssast_fast.masking.exact import gen_maskid_frame, gen_maskid_patch

__all__ = ["gen_maskid_frame", "gen_maskid_patch"]
