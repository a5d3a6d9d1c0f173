"""Masked-patch sampling (docs/masks.md).

- ``exact``: the reference-exact generators (``gen_maskid_patch``, ``gen_maskid_frame``,
  ``batch_masks``): the reference's indices, bit for bit, from Python's ``random``.
- ``reference``: the reference's algorithms in readable Python (the pure path and the compiled
  replay's self-check oracle).
- ``fast``: ``sample_masks``, the batched sampler with the reference's law (torch's RNG), and its
  tensor-op formulation.
- ``kernel_op``: the op ``ssast_fast::masks`` (C++ on the CPU, CUDA kernel) and the CUDA
  kernel's self-check.
- ``dispatch``: the family's backend choice ``resolve_backend`` (C++, CUDA, tensor ops; compiled
  or pure-Python reference generators).
"""
from ssast_fast.masking.exact import batch_masks, gen_maskid_frame, gen_maskid_patch
from ssast_fast.masking.fast import sample_masks

__all__ = ["batch_masks", "gen_maskid_frame", "gen_maskid_patch", "sample_masks"]
