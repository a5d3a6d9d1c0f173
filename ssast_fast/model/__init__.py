"""The SSAST model.

- ``ast_model``: :class:`ASTModel`, the reference-compatible model (API, state-dict keys,
  numbers): patch embedding, pretraining tasks and heads, fine-tuning, masking rules.
- ``encoder``: the DeiT-style ViT encoder (timm 0.4.5 layout) with the model sizes
  (:data:`MODEL_SIZES`); its blocks call the fused ops.
- ``heads``: the pretraining heads' batched pieces (gathers, masked-token replacement, accuracy
  rule, MSE).
- ``pos_embed``: positional-embedding adaptation from the pretraining to the fine-tuning grid.
"""
from ssast_fast.model.ast_model import ASTModel
from ssast_fast.model.encoder import MODEL_SIZES

__all__ = ["ASTModel", "MODEL_SIZES"]
