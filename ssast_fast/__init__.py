"""ssast_fast: a fast, faithful implementation of SSAST (Gong et al., AAAI 2022)."""
from ssast_fast import _ext  # noqa: F401  (loads the optional compiled extension once)

__version__ = "0.1.0"
