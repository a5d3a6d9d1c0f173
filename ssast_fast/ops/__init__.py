"""Fused ops, one module each: Triton kernel + autograd.Function + custom op + torch reference.

- ``ssast_fast.ops.attention``: bidirectional flash attention,
  ``from ssast_fast.ops.attention import attention``.
- ``ssast_fast.ops.infonce``: SSAST's InfoNCE loss and column-argmax accuracy, fused,
  ``from ssast_fast.ops.infonce import infonce``.

(Nothing is re-exported here on purpose: a function named like its module would shadow it.)
"""
