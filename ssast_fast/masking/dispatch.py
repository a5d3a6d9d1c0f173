"""Backend choice of the mask family (:func:`resolve_backend`, the package's one dispatch idiom).

The batched sampler (:func:`ssast_fast.masking.sample_masks`):

``"cpp"``    the op ``ssast_fast::masks`` on the CPU (``_C.mask_fast``), when ``_C`` is built;
``"cuda"``   the op's CUDA kernel (``_C_cuda``), once it passed its self-check on the device
             (:func:`ssast_fast.masking.kernel_op.check_cuda_kernel`, run once per device through
             :mod:`ssast_fast.ops.dispatch`: a failure gives one warning and ``"torch"`` there
             from then on). Inside a torch.compile trace or a CUDA graph capture before the first
             check, the kernel counts as ready (a check would synchronise; the tensor-op path
             cannot be captured);
``"torch"``  the tensor-op formulation of :mod:`ssast_fast.masking.fast` (any device);
``"auto"``   "cpp" on the CPU and the self-checked "cuda" on CUDA where built, else "torch".

The reference-exact generators (:mod:`ssast_fast.masking.exact`, ``exact=True``): ``"cpp"``,
the compiled replay of CPython's random and set order, once it passed its self-check against the
pure path on this interpreter (:func:`ssast_fast.masking.reference.check_replay`); ``"python"``,
the pure path; ``"auto"``: "cpp" where built and checked, else "python".

Every ``auto`` decision is recorded (op ``"masks"``) in :func:`ssast_fast.ops.dispatch.record`.
"""
from __future__ import annotations

import torch

from ssast_fast import _ext
from ssast_fast.masking import kernel_op
from ssast_fast.masking.reference import check_replay
from ssast_fast.ops import dispatch

__all__ = ["BACKENDS", "EXACT_BACKENDS", "resolve_backend"]

BACKENDS = ("auto", "cpp", "cuda", "torch")
EXACT_BACKENDS = ("auto", "cpp", "python")

_CPU = torch.device("cpu")


def resolve_backend(device: torch.device | str, backend: str = "auto", *, exact: bool = False) -> str:
    """The concrete backend that draws masks on ``device`` (the masks' device: the op takes no
    input tensor): "cpp" | "cuda" | "torch" for the batched sampler, "cpp" | "python" for the
    reference-exact generators (``exact=True``, CPU). See the module docstring.

    Raises ValueError for an unknown backend or one that does not run on ``device``, and
    RuntimeError for an explicit backend whose extension is not built.
    """
    device = torch.device(device)
    if exact:
        return _resolve_exact(backend)
    if backend not in BACKENDS:
        raise ValueError(f"masks: unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend in ("cpp", "cuda"):
        if device.type != ("cpu" if backend == "cpp" else "cuda"):
            raise ValueError(f"masks: backend {backend!r} does not run on device {device}")
        if _ext.get() is None or (backend == "cuda" and _ext.get_cuda() is None):
            raise RuntimeError(f"masks: backend {backend!r} needs the compiled extension "
                               f"{'ssast_fast._C' if backend == 'cpp' else 'ssast_fast._C_cuda'}")
    if backend != "auto":
        return backend
    if not dispatch.kernel_device(device):
        which = "cpp" if device.type == "cpu" and _ext.get() is not None else "torch"
        dispatch.note("masks", f"sampler, {device.type}", which, "the C++ sampler (extension built)"
                      if which == "cpp" else "tensor ops (no compiled sampler for this device here)")
        return which
    if _ext.get_cuda() is None or _ext.get() is None:
        dispatch.note("masks", f"sampler, {device.type}", "torch",
                      "tensor ops: the CUDA extension _C_cuda is not built (or SSAST_FAST_PURE=1)")
        return "torch"
    if device.type == "cuda":
        device = torch.device("cuda", kernel_op.device_index(device))
    return dispatch.resolve("masks", device, kernel="cuda", fallback="torch",
                            kernel_name="CUDA mask kernel", check_key=f"sampler, {device.type}",
                            check=lambda: kernel_op.check_cuda_kernel(device), unchecked="cuda")


def _resolve_exact(backend: str) -> str:
    if backend not in EXACT_BACKENDS:
        raise ValueError(f"masks (exact): unknown backend {backend!r}; choose one of {EXACT_BACKENDS}")
    if backend == "cpp" and _ext.get() is None:
        raise RuntimeError("masks (exact): backend 'cpp' needs the compiled extension ssast_fast._C")
    if backend != "auto":
        return backend
    if _ext.get() is None:
        dispatch.note("masks", "reference generators, cpu", "python",
                      "the pure path: the extension is not built (or SSAST_FAST_PURE=1)")
        return "python"
    return dispatch.resolve("masks", _CPU, kernel="cpp", fallback="python",
                            kernel_name="compiled reference mask generator",
                            check_key="reference generators, cpu",
                            check=lambda: check_replay(_ext.get()))
