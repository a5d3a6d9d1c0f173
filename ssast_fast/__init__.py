"""ssast_fast: a fast, faithful implementation of SSAST (Gong et al., AAAI 2022).

The same model API, state-dict keys, checkpoints and numbers as the official code, with compiled
kernels that load optionally (``import ssast_fast`` never fails on a CPU-only box;
``SSAST_FAST_PURE=1`` forces the pure paths). Subpackages and modules:

- :mod:`ssast_fast.model`: ``ASTModel`` (reference-compatible) and its ViT encoder.
- :mod:`ssast_fast.ops`: the fused ops (attention, InfoNCE, LayerNorm) with their kernels, and
  :mod:`ssast_fast.ops.dispatch`, the self-check / measured-choice machinery every op family's
  ``resolve_backend`` uses and the record of what ``backend="auto"`` chose.
- :mod:`ssast_fast.features`: Kaldi-compatible log-mel filterbanks (torch, C++, Triton) and the
  SSAST front end.
- :mod:`ssast_fast.masking`: masked-patch sampling, reference-exact and batched (C++, CUDA,
  tensor ops).
- :mod:`ssast_fast.data`: datasets, audio I/O, augmentation. :mod:`ssast_fast.train`: the
  training pipeline. :mod:`ssast_fast.cli`: the ``ssast-fast`` command. :mod:`ssast_fast.demo`:
  the spoken-keyword demo. :mod:`ssast_fast.export`: ONNX and transformers export and import.
- :mod:`ssast_fast.checkpoint`: reading and writing the reference's checkpoints safely.
- ``ssast_fast._ext``: the optional loader of the compiled extensions ``_C`` (CPU) and
  ``_C_cuda`` (CUDA).
"""
from ssast_fast import _ext  # noqa: F401  (loads the optional compiled extension once)
from ssast_fast import checkpoint, masking
from ssast_fast.model import ASTModel

__version__ = "0.1.0"
__all__ = ["ASTModel", "checkpoint", "masking"]
