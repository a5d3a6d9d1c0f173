"""Triton plumbing shared by the fused ops (:mod:`ssast_fast.ops.attention`,
:mod:`ssast_fast.ops.infonce`, :mod:`ssast_fast.features.fbank_triton`): the optional import
(:data:`HAS_TRITON`), the interpreter flag (:data:`TRITON_INTERPRET`), the launch configurations
(:class:`TunedKernel`, :func:`pinned_configs`), shape buckets for the autotune keys, the dot
precision, the device context and the runtime checks.

Every Triton module guards its kernels the same way: ``if HAS_TRITON:`` around the
``@triton.jit`` definitions, and ``TRITON_INTERPRET`` imported from here (read once, at this
module's import; nobody reads the environment variable on their own). An op module keeps the flag
as a module global, which tests may patch, and passes it to :func:`require_triton_runtime`.

Launch configurations: a kernel's configs are grouped by a *config class* (for example
``("bfloat16", 64)``: input dtype and head dim); each class lists only configs that pass the sm_90
resource report (``benchmarks/compile_report.py``: shared memory within Hopper's 232,448 bytes per
block, no register spills, on triton 3.6 and 3.7), its first entry being the class's default. A
class with no passing config is absent, and the op's ``supports()`` sends it to the torch path.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, ContextManager, NamedTuple

import torch

try:  # Triton is optional: without it only the torch backends exist.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only on machines without triton
    triton = None
    tl = None
    HAS_TRITON = False

__all__ = ["HAS_TRITON", "SHARED_MEMORY_LIMIT", "TRITON_DTYPES", "BlockConfig", "TunedKernel",
           "aligned", "check_triton_dtype", "config_table", "configs_pinned", "device_ctx",
           "dot_precision",
           "dtype_name", "TRITON_INTERPRET", "pinned_configs", "pow2_bucket",
           "require_triton_runtime", "tl", "triton"]

#: Input dtypes the Triton kernels take.
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: Shared memory one thread block may use on sm_90 (H100/H200): 227 KiB.
SHARED_MEMORY_LIMIT = 232_448


class BlockConfig(NamedTuple):
    """One launch configuration of a tiled kernel."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int

    def meta(self) -> dict[str, int]:
        """The kernel's block-size meta-parameters."""
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n}


def config_table(half: Mapping[int, Sequence[tuple]], fp32: Mapping[int, Sequence[tuple]]
                 ) -> dict[tuple[str, int], list[tuple]]:
    """``{(dtype name, dim): configs}`` from per-dim lists for float16 and bfloat16 (one list:
    their tensor-core kernels compile alike) and for float32."""
    table = {(dt, d): list(cfgs) for dt in ("float16", "bfloat16") for d, cfgs in half.items()}
    return table | {("float32", d): list(cfgs) for d, cfgs in fp32.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """``"float32"`` for ``torch.float32``: the dtype part of a config class."""
    return str(dtype).removeprefix("torch.")


def _interpret_flag() -> bool:
    """Whether Triton runs in its CPU interpreter: from ``triton.knobs`` where it exists, else
    from the environment; False without Triton."""
    if not HAS_TRITON:
        return False
    try:
        return bool(triton.knobs.runtime.interpret)
    except AttributeError:  # older triton without knobs
        return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


#: Triton runs in its CPU interpreter (``TRITON_INTERPRET=1`` set before ssast_fast is
#: imported): the kernels then take CPU tensors only. Triton decides at decoration time whether
#: ``@triton.jit`` builds an interpreted function, so the flag is read once, here.
TRITON_INTERPRET: bool = _interpret_flag()


def pow2_bucket(n: int, lo: int, hi: int) -> int:
    """``n`` rounded up to a power of two, clamped to [lo, hi]: an autotune key for a size, so
    that a bucket of shapes is tuned once."""
    return max(lo, min(hi, 1 << max(0, int(n) - 1).bit_length()))


# ---- pinned configs --------------------------------------------------------------------------

_pin_lock = threading.Lock()
_pin_depth = 0


@contextlib.contextmanager
def pinned_configs() -> Iterator[None]:
    """Within this block, every Triton op launches each kernel with its class's default config
    (the first listed; it passes the resource report) instead of autotuning.

    Process-wide (the autograd engine runs CUDA backward passes on its own threads), nestable.
    Meant for correctness runs that must not spend minutes benchmarking configs; outside it the
    autotuner picks among the listed configs once per shape bucket.
    """
    global _pin_depth
    with _pin_lock:
        _pin_depth += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pin_depth -= 1


def configs_pinned() -> bool:
    """Whether a :func:`pinned_configs` block is active."""
    return _pin_depth > 0


class TunedKernel:
    """A ``@triton.jit`` kernel with its launch configurations per config class.

    Args:
        fn: the raw ``@triton.jit`` kernel (meta-parameters ``BLOCK_M`` and ``BLOCK_N``).
        configs: config class -> the configs that pass the resource report, default first.
        class_of: the config class of a launch, from its named arguments.
        key: the autotune key (argument names; Triton adds the tensor dtypes).
        interpret: Triton's interpreter is active; every launch then uses ``interpret_config``
            (the interpreter cannot time configs).
        interpret_config: the config used under the interpreter.

    Autotuning chooses only among the launch class's configs (an ``early_config_prune`` by
    class), so float32 and half-precision configs stay apart without extra attributes on
    ``triton.Config`` (a cached tuning result must load back as a plain ``Config``).
    """

    def __init__(self, fn, configs: Mapping[Hashable, Sequence[BlockConfig]],
                 class_of: Callable[[Mapping[str, Any]], Hashable], key: Sequence[str],
                 interpret: bool, interpret_config: BlockConfig):
        if not all(configs.values()):
            raise ValueError("every config class needs at least one config")
        self.fn = fn
        self.configs = {cls: tuple(BlockConfig(*c) for c in cfgs) for cls, cfgs in configs.items()}
        self.class_of = class_of
        self.interpret = interpret
        self.interpret_config = BlockConfig(*interpret_config)
        self._triton_configs = {c: triton.Config(c.meta(), num_warps=c.num_warps,
                                                 num_stages=c.num_stages)
                                for cfgs in self.configs.values() for c in cfgs}
        self._tuner = triton.autotune(list(self._triton_configs.values()), key=list(key),
                                      prune_configs_by={"early_config_prune": self._prune})(fn)

    def _prune(self, configs: Sequence, named_args: Mapping[str, Any], **kwargs: Any) -> list:
        return [self._triton_configs[c] for c in self.configs[self.class_of({**named_args,
                                                                             **kwargs})]]

    def default(self, cls: Hashable) -> BlockConfig:
        """The config a launch of class ``cls`` uses under :func:`pinned_configs`."""
        return self.configs[cls][0]

    def launch(self, grid: Callable[[Mapping[str, int]], tuple], *args: Any, **kwargs: Any) -> None:
        """``fn[grid](*args, **kwargs)``: autotuned among the class's configs, or with its
        default under :func:`pinned_configs` (the interpreter's config under the interpreter).
        ``grid`` maps the meta-parameters (``BLOCK_M``, ``BLOCK_N``) to the launch grid."""
        named = {**dict(zip(self.fn.arg_names, args)), **kwargs}
        cls = self.class_of(named)
        if cls not in self.configs:
            raise ValueError(f"{self.fn.__name__}: no launch configuration for {cls!r} (it is "
                             "not supported; supported: "
                             f"{sorted(self.configs, key=str)})")
        if self.interpret or configs_pinned() or len(self.configs[cls]) == 1:
            c = self.interpret_config if self.interpret else self.configs[cls][0]
            self.fn[grid(c.meta())](*args, **kwargs, **c.meta(), num_warps=c.num_warps,
                                    num_stages=c.num_stages)
        else:
            self._tuner[grid](*args, **kwargs)


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s ``input_precision`` for inputs of ``dtype``.

    float32 inputs: true fp32 products (``"ieee"``; eager torch does not use TF32 by default
    either). Half inputs: ``"tf32"``, which Triton ignores for them.
    """
    return "ieee" if dtype == torch.float32 else "tf32"


def device_ctx(t: torch.Tensor) -> ContextManager:
    """``torch.cuda.device(t.device)`` for a CUDA tensor (kernels launch on its device), else a
    no-op context."""
    if t.is_cuda:
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def require_triton_runtime(t: torch.Tensor, interpret: bool, *, missing: str,
                           not_cuda: str) -> None:
    """Raise unless the Triton kernels can run on ``t``.

    Args:
        t: a kernel input.
        interpret: the calling op module's ``TRITON_INTERPRET``.
        missing: message of the ``RuntimeError`` raised when Triton is not installed.
        not_cuda: message of the ``ValueError`` raised for a non-CUDA tensor outside the
            interpreter; ``{device}`` is replaced by ``t``'s device.
    """
    if not HAS_TRITON:
        raise RuntimeError(f"{missing}; install it with `pip install 'ssast-fast[triton]'`")
    if not t.is_cuda and not interpret:
        raise ValueError(not_cuda.format(device=t.device))


def check_triton_dtype(dtype: torch.dtype, where: str) -> None:
    """Raise ``TypeError("{where}: dtype ... is not supported ...")`` for a dtype outside
    :data:`TRITON_DTYPES`."""
    if dtype not in TRITON_DTYPES:
        raise TypeError(f"{where}: dtype {dtype} is not supported (float32, float16, bfloat16)")


def aligned(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a contiguous copy of it when its data pointer is not 16-byte aligned, its last
    stride is not 1 or another stride is not a multiple of 16 elements.

    The kernels are compiled (and checked by the resource report) for the layout the model's
    tensors have: Triton's JIT specializes a kernel on argument alignment, and this keeps every
    launch on that one specialization. A contiguous copy is aligned when the last dim is a
    multiple of 16.
    """
    *lead, last = t.stride()
    if t.data_ptr() % 16 == 0 and last == 1 and all(s % 16 == 0 for s in lead):
        return t
    return t.contiguous() if not t.is_contiguous() else t.clone()
