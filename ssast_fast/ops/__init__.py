"""Fused ops, one module each: Triton kernel + autograd.Function + custom op + torch reference.

- ``ssast_fast.ops.attention``: bidirectional flash attention,
  ``from ssast_fast.ops.attention import attention``.

(Nothing is re-exported here on purpose: a function named like its module would shadow it.)
"""
