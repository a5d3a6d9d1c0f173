"""The SSAST model: reference-compatible ``ASTModel`` and its encoder."""
from ssast_fast.model.ast_model import ASTModel
from ssast_fast.model.encoder import MODEL_SIZES

__all__ = ["ASTModel", "MODEL_SIZES"]
