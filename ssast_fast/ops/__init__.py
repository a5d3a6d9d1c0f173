"""Fused ops, one module each: kernel, custom op (fake kernel, registered autograd), torch reference,
and the family's ``resolve_backend(<main input>, backend="auto", ...)``.

- ``attention``: bidirectional attention (Triton flash-attention kernel, SDPA, eager) and its
  dispatcher, ``from ssast_fast.ops.attention import attention``.
- ``attention_amx``: the bfloat16 CPU attention kernels of the C++ extension (backend "amx").
- ``infonce``: SSAST's InfoNCE loss and column-argmax accuracy, fused Triton kernels and the
  torch reference, ``from ssast_fast.ops.infonce import infonce``.
- ``layer_norm``: LayerNorm (optionally fused with the residual add before it) with a bfloat16
  output, the C++ kernels the encoder uses under CPU bf16 autocast.
- ``dispatch``: what ``backend="auto"`` rests on for every op family (here, in
  :mod:`ssast_fast.features` and in :mod:`ssast_fast.masking`): the kernels' first-use
  self-check, the measured choice, and the record of every decision (training prints it and
  saves it in summary.json and checkpoints).
- ``_triton_common``: Triton plumbing shared by every Triton kernel (the optional import
  ``HAS_TRITON``, the one interpreter flag ``TRITON_INTERPRET``, launch configurations, runtime
  checks); ``_attention_autograd``: the autograd formula shared by the attention custom ops.

(Nothing is re-exported here on purpose: a function named like its module would shadow it.)
"""
