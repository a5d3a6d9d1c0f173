"""ssast_fast: a fast, faithful implementation of SSAST (Gong et al., AAAI 2022)."""
from ssast_fast import _ext  # noqa: F401  (loads the optional compiled extension once)
from ssast_fast import checkpoint, masking
from ssast_fast.model import ASTModel

__version__ = "0.1.0"
__all__ = ["ASTModel", "checkpoint", "masking"]
