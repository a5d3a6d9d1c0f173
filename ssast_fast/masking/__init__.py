"""Masked-patch sampling: reference-exact generators and the fast batched sampler (docs/masks.md)."""
from ssast_fast.masking.exact import batch_masks, gen_maskid_frame, gen_maskid_patch
from ssast_fast.masking.fast import sample_masks

__all__ = ["batch_masks", "gen_maskid_frame", "gen_maskid_patch", "sample_masks"]
