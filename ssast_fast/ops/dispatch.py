"""How ``backend="auto"`` reaches a custom kernel safely: a first-use self-check, a measured
choice, and a record of both.

Every op family decides its backend with one function, ``resolve_backend(<main input>,
backend="auto", ...) -> str``, in its own module: :func:`ssast_fast.ops.attention.resolve_backend`,
:func:`ssast_fast.ops.infonce.resolve_backend`, :func:`ssast_fast.ops.layer_norm.resolve_backend`,
:func:`ssast_fast.features.dispatch.resolve_backend`, :func:`ssast_fast.masking.dispatch.resolve_backend`.
Each decides from the device, the dtype, what is built, the user's choice and, for a custom GPU
kernel (Triton attention, InfoNCE and fbank, the CUDA mask kernel) wherever
:func:`kernel_device` holds (CUDA), through :func:`resolve`; fixed rules are recorded with
:func:`note`. Between a call and a custom kernel stand two guards:

1. **Self-check**, once per (op, device, check key) -- attention and InfoNCE: dtype and head dim;
   fbank: its settings; masks: the device. The op's ``check()`` runs the kernel on small random
   inputs against its reference and returns None (agrees) or why not. A mismatch or any
   exception (Triton's ``OutOfResources``, a compile error, ...) gives one ``RuntimeWarning``
   naming the kernel and the reason, and from then on ``auto`` takes the op's fallback (its
   torch path) for that key. (The compiled reference-exact mask generators on the CPU are
   self-checked the same way.)
2. **Measured choice**, once per (op, choice key) -- attention: dtype, D, N bucket, B*H bucket,
   forward or forward+backward. ``candidates()`` gives one zero-argument callable per backend,
   each running the call's shape on fresh inputs; each is timed (:func:`default_timer`), the
   fastest wins and a tie goes to the one listed first (the torch path). A kernel that raises
   there is disabled as if its self-check had failed (one warning).

Both need real tensors, so they run only eagerly (:func:`can_probe`): never while
``torch.compile`` traces or a CUDA graph is captured. There, what is settled is read as a
constant (:func:`settled`) and a key not settled yet resolves to the torch path (or to what the
op names as ``unchecked``: the mask kernel, whose torch path cannot be captured); one eager step
before compiling settles everything (``--compile`` training runs it at model build).

Every outcome is recorded -- backend, reason, timings, where it came from -- for the training
summary (:func:`record`, :func:`format_record`), saved in training checkpoints and restored on
resume (:func:`state_dict`, :func:`load_state_dict`), and in a distributed run taken from rank 0
(:func:`broadcast_from_rank0`), so every rank and a resumed run use the same choices.

Tests drive all of it on CPU by patching :func:`kernel_device` and passing their own ``check``,
``candidates`` and ``timer``; the op modules keep their checks and candidates, this module the
state: it imports no op module.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

__all__ = ["Decision", "broadcast_from_rank0", "bucket", "can_probe", "default_timer",
           "format_record", "kernel_device", "load_state_dict", "measure", "note", "pick",
           "record", "reset", "resolve", "resolve_triton", "self_check", "settled", "state_dict"]

#: Where a decision came from: a fixed rule (CPU, unsupported dtype or shape), the self-check
#: alone, a measurement in this process, a training checkpoint, or rank 0 of a distributed run.
SOURCES = ("rule", "self-check", "measured", "checkpoint", "rank 0")
_KEPT = ("measured", "checkpoint", "rank 0")  # what a checkpoint / the broadcast carries
_STATE_VERSION = 1

Check = Callable[[], Optional[str]]
Candidates = Callable[[], Mapping[str, Callable[[], object]]]
Timer = Callable[[Callable[[], object]], float]


@dataclass
class Decision:
    """What ``auto`` resolves to for one (op, key), and why."""

    op: str
    key: str
    backend: str
    reason: str
    source: str
    timings_ms: dict[str, float] = field(default_factory=dict)


# Process-wide state: self-check outcomes (op, device, check key) -> (ok, reason), and
# decisions (op, key) -> Decision.
_checks: dict[tuple[str, str, str], tuple[bool, str]] = {}
_decisions: dict[tuple[str, str], Decision] = {}


def reset() -> None:
    """Forget every self-check and decision (tests; a fresh process starts empty)."""
    _checks.clear()
    _decisions.clear()


# ---- guards ------------------------------------------------------------------------------------


def kernel_device(device: torch.device) -> bool:
    """Whether ``auto`` routes work on ``device`` through the self-checked custom kernels: CUDA.
    The one device predicate of the machinery (tests patch it to run it on CPU)."""
    return device.type == "cuda"


def can_probe(device: torch.device) -> bool:
    """Whether a self-check or a timing may run now: not while torch.compile traces, not while a
    CUDA graph is being captured."""
    if torch.compiler.is_compiling():
        return False
    return not (device.type == "cuda" and torch.cuda.is_available()
                and torch.cuda.is_current_stream_capturing())


def bucket(n: int) -> int:
    """The shape bucket of a size: the next power of two, at least 16."""
    return max(16, 1 << max(0, int(n) - 1).bit_length())


# ---- self-check --------------------------------------------------------------------------------


def self_check(op: str, device: torch.device, key: str, check: Check, kernel_name: str,
               fallback: str = "torch") -> Optional[bool]:
    """Run the kernel's ``check`` once per (op, device, key).

    Returns True (passed, now or before), False (failed, now or before; one RuntimeWarning
    naming ``kernel_name``, the reason and the ``fallback`` backend when it failed) or None (not
    known, and it cannot run now: :func:`can_probe` is false).
    """
    slot = (op, str(device), key)
    if slot not in _checks:
        if not can_probe(device):
            return None
        try:
            why = check()
        except Exception as e:  # noqa: BLE001 - any launch or compile error disables the kernel
            why = _error_text(e)
        _checks[slot] = (why is None, "self-check passed" if why is None else why)
        if why is not None:
            _warn_failed(kernel_name, device, key, why, fallback, "its self-check ")
    return _checks[slot][0]


def _disable(op: str, device: torch.device, key: str, kernel_name: str, why: str,
             fallback: str) -> None:
    """Mark the kernel failed for (op, device, key) after a later error (one warning)."""
    slot = (op, str(device), key)
    if slot in _checks and not _checks[slot][0]:
        return
    _checks[slot] = (False, why)
    _warn_failed(kernel_name, device, key, why, fallback)


def _warn_failed(kernel_name: str, device: torch.device, key: str, why: str, fallback: str,
                 what: str = "") -> None:
    warnings.warn(f"ssast_fast: the {kernel_name} failed {what}on {device} for {key} ({why}); "
                  f"backend='auto' uses {fallback!r} there from now on", RuntimeWarning,
                  stacklevel=4)


def _error_text(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}"


# ---- measured choice ---------------------------------------------------------------------------


def default_timer(fn: Callable[[], object], warmup: int = 2, reps: int = 5) -> float:
    """Median wall time of ``fn()`` in ms after ``warmup`` calls (the first ones also compile and
    autotune); CUDA is synchronized around every timed call."""
    def sync() -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def measure(candidates: Mapping[str, Callable[[], object]], timer: Timer = default_timer
            ) -> dict[str, float | str]:
    """Time every candidate: name -> ms, or the error (one line) of a candidate that raised."""
    out: dict[str, float | str] = {}
    for name, fn in candidates.items():
        try:
            out[name] = float(timer(fn))
        except Exception as e:  # noqa: BLE001 - a failing candidate is simply not chosen
            out[name] = _error_text(e)
    return out


def pick(timings: Mapping[str, float | str]) -> tuple[str, str]:
    """(fastest candidate, reason) from :func:`measure`'s result; a tie goes to the candidate
    listed first. Raises ValueError when no candidate ran."""
    order = list(timings)
    ok = {k: v for k, v in timings.items() if isinstance(v, float) and math.isfinite(v)}
    if not ok:
        raise ValueError(f"no candidate ran: {dict(timings)}")
    best = min(ok, key=lambda k: (ok[k], order.index(k)))
    parts = [f"{k} {v:.3f} ms" if isinstance(v, float) else f"{k} failed ({v})"
             for k, v in timings.items()]
    return best, "measured fastest: " + ", ".join(parts)


# ---- resolution --------------------------------------------------------------------------------


def resolve(op: str, device: torch.device, *, kernel: str, fallback: str, kernel_name: str,
            check_key: str, check: Check, choice_key: Optional[str] = None,
            candidates: Optional[Candidates] = None, timer: Optional[Timer] = None,
            unchecked: Optional[str] = None) -> str:
    """The backend ``auto`` uses for one call of ``op`` on ``device`` (a kernel device).

    Args:
        kernel: the custom kernel's backend name ("triton"); fallback: the torch path's.
        kernel_name: how warnings name the kernel ("Triton attention kernel").
        check_key, check: the self-check's key and function (:func:`self_check`).
        choice_key, candidates: for a measured choice, its key and the candidates to time (the
            torch path first); without them a kernel that passes its self-check is used.
        timer: times one candidate in ms (default :func:`default_timer`).
        unchecked: what a call that cannot run the self-check yet (tracing, capturing) gets
            before it ran (default ``fallback``).

    Returns ``fallback`` when the self-check failed, or has not run and cannot run now.
    """
    if not can_probe(device):
        return settled(op, str(device), check_key, choice_key or "", kernel, fallback,
                       unchecked or fallback)
    rec_key = choice_key or check_key
    if not self_check(op, device, check_key, check, kernel_name, fallback):
        if (op, rec_key) not in _decisions or _decisions[(op, rec_key)].backend != fallback:
            why = _checks[(op, str(device), check_key)][1]
            _set(Decision(op, rec_key, fallback, f"{kernel} failed its check: {why}",
                          "self-check"))
        return fallback
    known = _decisions.get((op, rec_key))
    if candidates is None or choice_key is None:
        if known is None:
            _set(Decision(op, rec_key, kernel, "self-check passed", "self-check"))
        return kernel
    if known is not None and known.source in _KEPT:
        return known.backend
    timings = measure(candidates(), timer or default_timer)
    if isinstance(timings.get(kernel), str):  # the kernel raised at this shape: disable it
        _disable(op, device, check_key, kernel_name, str(timings[kernel]), fallback)
    try:
        backend, reason = pick(timings)
    except ValueError as e:
        backend, reason = fallback, str(e)
    _set(Decision(op, choice_key, backend, reason, "measured",
                  {k: v for k, v in timings.items() if isinstance(v, float)}))
    return backend


def resolve_triton(op: str, device: torch.device, *, dtype: torch.dtype, D: int,
                   sizes: Mapping[str, int], grad: bool, supported: bool, interpret: bool,
                   fallback: str, kernel_name: str, check: Check, candidates: Candidates) -> str:
    """:func:`resolve` for a Triton op keyed by (dtype, D), its measured choice by the buckets of
    ``sizes`` (e.g. {"N": N, "B*H": B * H}) and ``grad`` (forward+backward or forward).

    ``supported``: Triton is installed and the kernel takes (dtype, D); ``interpret``: the op
    module runs Triton's interpreter (which works on CPU tensors only). Otherwise ``fallback``,
    recorded as a rule.
    """
    name = str(dtype).replace("torch.", "")
    if not (supported and (device.type == "cuda") != interpret):
        note(op, f"{device.type}, {name}, D={D}", fallback, f"the {kernel_name} cannot run this "
             "(triton missing or interpreted, or dtype / D unsupported)")
        return fallback
    buckets = ", ".join([f"{k}<={bucket(v)}" for k, v in sizes.items()])
    return resolve(op, device, kernel="triton", fallback=fallback, kernel_name=kernel_name,
                   check_key=f"{name}, D={D}", check=check,
                   choice_key=f"{name}, D={D}, {buckets}, {'fwd+bwd' if grad else 'fwd'}",
                   candidates=candidates)


@torch.compiler.assume_constant_result
def settled(op: str, device: str, check_key: str, choice_key: str, kernel: str,
            fallback: str, unchecked: str) -> str:
    """What is settled for a call, running nothing (while tracing, a constant of the graph):
    the recorded choice -- the kernel alone when ``choice_key`` is empty -- if the kernel passed
    its self-check on ``device``, ``fallback`` if it failed, ``unchecked`` if it has not run."""
    chk = _checks.get((op, device, check_key))
    if chk is None:
        return unchecked
    if not chk[0]:
        return fallback
    if not choice_key:
        return kernel
    known = _decisions.get((op, choice_key))
    return known.backend if known is not None and known.source in _KEPT else fallback


def note(op: str, key: str, backend: str, reason: str) -> None:
    """Record a rule-based resolution (CPU, an unsupported dtype or shape) the first time; a
    no-op while tracing."""
    if torch.compiler.is_compiling() or (op, key) in _decisions:
        return
    _set(Decision(op, key, backend, reason, "rule"))


def _set(d: Decision) -> None:
    _decisions[(d.op, d.key)] = d


# ---- record, checkpoint, distributed -----------------------------------------------------------


def record() -> list[dict]:
    """Every decision so far as JSON-friendly dicts (op, key, backend, reason, source,
    timings_ms), sorted by op and key: what the training summary stores."""
    return [asdict(d) for _, d in sorted(_decisions.items())]


def format_record() -> list[str]:
    """One line per decision: ``op [key] -> backend (source: reason)``."""
    return [f"{d['op']} [{d['key']}] -> {d['backend']} ({d['source']}: {d['reason']})"
            for d in record()]


def state_dict() -> dict:
    """The measured choices (also those restored or broadcast), for a training checkpoint."""
    return {"version": _STATE_VERSION,
            "decisions": [asdict(d) for d in _decisions.values() if d.source in _KEPT]}


def load_state_dict(state: Optional[Mapping], source: str = "checkpoint") -> None:
    """Adopt saved choices (:func:`state_dict`) instead of measuring them; None is a no-op.

    A restored kernel choice still needs the kernel's self-check to pass on this process's
    device. Raises ValueError for a malformed state.
    """
    if state is None:
        return
    if not isinstance(state, Mapping) or state.get("version") != _STATE_VERSION \
            or not isinstance(state.get("decisions"), list):
        raise ValueError(f"dispatch state: expected {{'version': {_STATE_VERSION}, "
                         f"'decisions': [...]}}, got {str(state)[:200]}")
    for d in state["decisions"]:
        if not isinstance(d, Mapping) or not all(isinstance(d.get(k), str) for k in
                                                  ("op", "key", "backend", "reason")):
            raise ValueError(f"dispatch state: malformed decision {str(d)[:200]}")
        timings = {str(k): float(v) for k, v in dict(d.get("timings_ms") or {}).items()}
        _set(Decision(d["op"], d["key"], d["backend"], d["reason"], source, timings))


def broadcast_from_rank0() -> None:
    """In a distributed run (torch.distributed initialized, world size > 1) every rank adopts
    rank 0's measured choices in place of its own; a no-op otherwise. Collective: every rank
    calls it at the same point (after the warm-up step)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    box = [state_dict() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    if dist.get_rank() != 0:
        for k in [k for k, d in _decisions.items() if d.source in _KEPT]:
            del _decisions[k]
        load_state_dict(box[0], source="rank 0")
