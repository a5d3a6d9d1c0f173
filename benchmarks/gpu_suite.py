"""One cold run on one H100/H200 that settles the GPU path: preflight, correctness, speed, each
row with its verdict, in at most ``--deadline`` seconds (compile and autotune included).

    python benchmarks/gpu_suite.py --out runs/gpu --deadline 360   # the GPU run (<= 6 min)
    python benchmarks/gpu_suite.py --dry-run --out /tmp/gpu_dry     # CPU: small shapes, Triton
                                                                    # interpreted (no verdicts on speed)
    python benchmarks/gpu_suite.py --list                           # the sections
    python benchmarks/gpu_suite.py --only attention/ --json a.json  # some sections; JSON copy
    python benchmarks/gpu_suite.py --golden DIR                     # model fixtures from DIR

Sections, in order: ``preflight`` (versions, device, SMs, memory, the C++ extension, the resource
report started in the background); correctness, PASS/FAIL per row, the Triton kernels held to
one configuration (``pinned_configs``, no autotuning): ``attention/parity``, ``infonce/parity``,
``fbank/parity``, ``masks/check``, ``model/joint_parity``, ``model/golden``; speed, each row
with its target (kernel choices measured afresh, not pinned): ``attention/bench``,
``model/joint_step``, ``fbank/bench``, ``infonce/bench``, ``masks/bench`` (no target);
``resources`` (the resource
report's rows: every selectable Triton config within Hopper's limits); then one final table.

After every section the JSON (``DIR/gpu_suite.json``, and ``--json``) and the log
(``DIR/gpu_suite.log``) are on disk. A section whose estimated cost would pass the deadline
prints ``SKIPPED (budget)`` instead of running (long sections also stop between cases). Rows
that need the C++ extension or the golden fixtures say so when those are missing. Exit status 1
when a row FAILed or a section raised; without a CUDA device (and without ``--dry-run``) it
prints a line and exits 0. Do not set TRITON_INTERPRET (``--dry-run`` sets it itself).

Adding a section: a function taking ``(args, budget)`` and returning a :class:`Table`,
registered with ``@section(name, kind, gpu_s, dry_s)`` (kind "check" | "bench"; the costs are
cold-run estimates in seconds used by the budget); use ``DEVICE``, ``sync()``, ``time_ms()`` and
shrink the work under ``args.dry_run``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # the ssast_fast package
sys.path.insert(0, str(HERE))  # reference_path.py
sys.path.insert(0, str(REPO / "tests"))  # golden.py (fixture access)

import torch  # noqa: E402

PASS, FAIL, SKIP, NA = "PASS", "FAIL", "SKIP", "n/a"
BUDGET_SKIP = "SKIPPED (budget)"

# ---------------------------------------------------------------------------------------------
# Framework
# ---------------------------------------------------------------------------------------------


@dataclass
class Table:
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: (item, value, target, verdict) lines for the final table
    verdicts: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return sum(any(c == FAIL for c in r) for r in self.rows) + sum(
            v[3] == FAIL for v in self.verdicts)

    def verdict(self, item: str, value: str, target: str, verdict: str) -> None:
        self.verdicts.append((item, value, target, verdict))


@dataclass
class Section:
    name: str
    kind: str  # "check" | "bench"
    fn: Callable
    gpu_s: float  # estimated cold cost on an H100/H200, seconds
    dry_s: float  # estimated cost of the dry run on 2 CPU cores


SECTIONS: list[Section] = []
DEVICE = "cuda"  # "cpu" under --dry-run


def section(name: str, kind: str, gpu_s: float, dry_s: float):
    assert kind in ("check", "bench"), kind

    def register(fn):
        SECTIONS.append(Section(name, kind, fn, gpu_s, dry_s))
        return fn

    return register


class Budget:
    """Seconds left before the deadline."""

    def __init__(self, deadline: float) -> None:
        self.t0, self.deadline = time.perf_counter(), deadline

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.deadline - self.elapsed()


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], warmup: int = 3, reps: int = 20,
            setup: Callable[[], object] | None = None) -> float:
    """Median time of fn() in ms after warm-up: CUDA events on the GPU (setup() runs outside
    the timed region), perf_counter on the CPU (dry runs)."""
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    sync()
    times = []
    for _ in range(reps):
        if setup:
            setup()
        if DEVICE == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def pinned():
    """The Triton ops held to one launch configuration (no autotuning), if this build has it."""
    from ssast_fast.ops import _triton_common

    fn = getattr(_triton_common, "pinned_configs", None)
    return fn() if fn is not None else contextlib.nullcontext()


def pinned_note() -> str:
    from ssast_fast.ops import _triton_common

    if hasattr(_triton_common, "pinned_configs"):
        return "Triton kernels pinned to one configuration (pinned_configs): no autotuning"
    return "pinned_configs() is not in this build: the kernels autotuned here"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _fmt(x) -> str:
    if isinstance(x, float):
        if x == 0.0:
            return "0"
        if not math.isfinite(x):
            return str(x)
        if abs(x) >= 1e4 or abs(x) < 1e-2:
            return f"{x:.2e}"
        return f"{x:.3f}"
    return str(x)


def print_table(title: str, table: Table) -> None:
    cells = [table.columns] + [[_fmt(c) for c in row] for row in table.rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(table.columns))]
    print(f"\n== {title} ==")
    print("  ".join(c.ljust(w) for c, w in zip(table.columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    for note in table.notes:
        print(f"  note: {note}")
    if table.failures:
        print(f"  FAILED rows: {table.failures}")


class Tee:
    """Writes to a stream and to a log file, flushing both (a killed run keeps its log)."""

    def __init__(self, stream, log) -> None:
        self.stream, self.log = stream, log

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.log.write(s)
        self.log.flush()
        return len(s)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return False


# ---------------------------------------------------------------------------------------------
# Preflight and the resource report (issue 12 item 1: benchmarks/compile_report.py)
# ---------------------------------------------------------------------------------------------


def environment() -> dict:
    from ssast_fast import _ext

    env = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
           "python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    env["extension"] = "compiled" if _ext.available() else f"missing ({_ext._load_error or 'pure'})"
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                       capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["commit"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                   gpu_memory_GiB=round(p.total_memory / 2**30, 1))
    return env


def preflight(env: dict) -> Table:
    table = Table(["item", "value"], [[k, str(v)] for k, v in env.items()])
    if not env["extension"].startswith("compiled"):
        table.notes.append("the C++ extension is missing: rows that need it say so (masks use the "
                           "pure-Python reference sampler, fbank/bench has no C++ row)")
    return table


def start_resource_report(subset: bool, out_dir: Path) -> subprocess.Popen | None:
    """Run compile_report.run_report(subset) in a child process (Triton not interpreted), JSON to
    out_dir/resource_report.json; None when benchmarks/compile_report.py is not there."""
    if not (HERE / "compile_report.py").exists():
        return None
    code = ("import json, sys; sys.path[:0] = [{here!r}, {repo!r}]; "
            "from compile_report import run_report; rows = run_report(subset={subset!r}); "
            "json.dump(rows, open({out!r}, 'w'), default=str)").format(
        here=str(HERE), repo=str(REPO), subset=subset, out=str(out_dir / "resource_report.json"))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO)
    log = open(out_dir / "resource_report.log", "w")
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=REPO)


def resource_section(proc: subprocess.Popen | None, out_dir: Path, subset: bool,
                     budget: Budget) -> Table:
    """The resource report's rows (each selectable Triton config: shared memory, registers,
    spills); a config over Hopper's limits FAILs."""
    table = Table(["kernel", "config", "shared_bytes", "registers", "spills", "ok"])
    what = "subset (dry run)" if subset else "full"
    if proc is None:
        table.rows.append(["benchmarks/compile_report.py", "not in this build (issue 12 item 1)",
                           "-", "-", "-", SKIP])
        return table
    try:
        proc.wait(timeout=max(1.0, budget.left() - 5))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        table.rows.append(["resource report", what, "-", "-", "-", BUDGET_SKIP])
        return table
    path = out_dir / "resource_report.json"
    if proc.returncode != 0 or not path.exists():
        tail = (out_dir / "resource_report.log").read_text()[-600:].replace("\n", " | ")
        table.rows.append(["resource report", f"exit {proc.returncode}: {tail}", "-", "-", "-", FAIL])
        return table
    rows = json.loads(path.read_text())
    for r in rows:
        vals = {k.lower().replace(" ", "_"): v for k, v in r.items()}
        get = lambda *ks: next((vals[k] for k in ks if k in vals), "-")  # noqa: E731
        ok = vals.get("ok")
        table.rows.append([get("kernel"), str(get("config"))[:60],
                           get("shared_bytes", "shared", "shared_memory"),
                           get("registers", "regs", "n_regs"), get("spills", "spill_bytes"),
                           PASS if ok else FAIL])
    table.notes.append(f"{what} report, {len(rows)} rows (benchmarks/compile_report.py): Hopper "
                       "allows 232,448 bytes of shared memory per block; no spills")
    return table


# ---------------------------------------------------------------------------------------------
# Correctness: attention (ssast_fast.ops.attention) against float64
# ---------------------------------------------------------------------------------------------

_ATTN_FLOOR = {torch.float32: 1e-6, torch.float16: 1e-5, torch.bfloat16: 1e-4}


def _attn_packed(backend: str, qkv: torch.Tensor, do: torch.Tensor, dtype: torch.dtype
                 ) -> list[torch.Tensor]:
    """[out, d qkv] (float64) of attention over the packed strided qkv [B, N, 3, H, D] that the
    model passes (q, k, v are permuted views of one tensor)."""
    from ssast_fast.ops.attention import attention

    leaf = qkv.detach().to(dtype).requires_grad_()
    q, k, v = leaf.permute(2, 0, 3, 1, 4).unbind(0)
    out = attention(q, k, v, backend=backend)
    out.backward(do.to(dtype))
    return [out.detach().double(), leaf.grad.double()]


@section("attention/parity", "check", gpu_s=60, dry_s=25)
def attention_parity(args, budget: Budget) -> Table:
    """Triton attention vs float64 eager over the packed strided qkv, forward and d qkv, one
    pinned config: PASS when its max error <= 2x that of eager attention in the same dtype
    (+ floor); N in {1, 7, 130, 514, 1214}, D 64 and 128, fp16/bf16/fp32, and peaked logits."""
    from ssast_fast.ops.attention import supports

    table = Table(["dtype", "N", "D", "logits", "err_out", "err_dqkv", "eager_out", "eager_dqkv",
                   "verdict"])
    B, H = 2, 4
    dtypes, Ns, Ds = (torch.float16, torch.bfloat16, torch.float32), (1, 7, 130, 514, 1214), (64, 128)
    n_peaked = 514
    if args.dry_run:  # the interpreter computes bf16 wrongly; tiny sizes
        B, H, dtypes, Ns, Ds, n_peaked = 1, 2, (torch.float32, torch.float16), (1, 33), (64,), 33
    cases = [(dt, n, d, 1.0) for dt in dtypes for d in Ds for n in Ns]
    cases += [(dt, n_peaked, d, 8.0) for dt in dtypes for d in Ds]  # peaked: q scaled by 8
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 eager must be true fp32
    try:
        with pinned():
            for dtype, N, D, peak in cases:
                row = [dtype_name(dtype), N, D, "peaked" if peak > 1 else "normal"]
                if budget.left() < 10:
                    table.rows.append(row + ["-"] * 4 + [BUDGET_SKIP])
                    continue
                if not supports(dtype, D):
                    table.rows.append(row + ["-"] * 4 + [f"{SKIP} (unsupported: auto uses SDPA)"])
                    continue
                g = torch.Generator(device=DEVICE).manual_seed(N * 1000 + D)
                qkv = torch.randn(B, N, 3, H, D, generator=g, device=DEVICE, dtype=torch.float64)
                qkv[:, :, 0] *= peak
                do = torch.randn(B, H, N, D, generator=g, device=DEVICE, dtype=torch.float64)
                ref = _attn_packed("eager", qkv, do, torch.float64)
                errs = {b: [(a - r).abs().max().item() for a, r in
                            zip(_attn_packed(b, qkv, do, dtype), ref)] for b in ("triton", "eager")}
                ok = all(et <= 2 * ee + _ATTN_FLOOR[dtype]
                         for et, ee in zip(errs["triton"], errs["eager"]))
                table.rows.append(row + errs["triton"] + errs["eager"] + [PASS if ok else FAIL])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    table.notes.append(f"B={B}, H={H}; err = max |x - x_fp64|; {pinned_note()}")
    return table


# ---------------------------------------------------------------------------------------------
# Correctness: InfoNCE (ssast_fast.ops.infonce)
# ---------------------------------------------------------------------------------------------


def _infonce_inputs(B, M, D, scale, seed):
    """float64 targets ~ N(0, scale^2), pred ~ N(0, 1/D), [B, M, D] on DEVICE."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    t = torch.randn(B, M, D, generator=g, device=DEVICE, dtype=torch.float64) * scale
    p = torch.randn(B, M, D, generator=g, device=DEVICE, dtype=torch.float64) * D ** -0.5
    return t, p


def _infonce_fwd_bwd(backend, targets, pred):
    """(nce, d pred) as float64; the torch backend computes in float64 for float64 inputs."""
    from ssast_fast.ops.infonce import infonce

    p = pred.detach().clone().requires_grad_()
    _, nce = infonce(targets, p, backend=backend)
    nce.backward()
    return nce.detach().double(), p.grad.double()


@section("infonce/parity", "check", gpu_s=20, dry_s=10)
def infonce_parity(args, budget: Budget) -> Table:
    """Triton InfoNCE at B=24, M=400, D=256 vs float64 and torch, one pinned config: nce and
    d pred within 2x the error of torch in the same dtype (+ floor); column hits equal to
    torch's except where the float64 column maximum is a near-tie or at the subnormal border."""
    from ssast_fast.ops import infonce as I

    table = Table(["dtype", "scale", "nce_err_triton", "nce_err_torch", "grad_err_triton",
                   "grad_err_torch", "acc", "hit_flips", "unexplained", "verdict"])
    B, M, D = (2, 40, 32) if args.dry_run else (24, 400, 256)
    cases = [(dt, s) for dt in (torch.float32, torch.bfloat16, torch.float16) for s in (1.0, 30.0)]
    if args.dry_run:  # the interpreter computes bf16 wrongly
        cases = [(torch.float32, 1.0), (torch.float32, 30.0), (torch.float16, 1.0)]
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 torch must be true fp32
    try:
        with pinned():
            for dtype, scale in cases:
                if budget.left() < 10:
                    table.rows.append([dtype_name(dtype), scale] + ["-"] * 7 + [BUDGET_SKIP])
                    continue
                t64, p64 = (x.to(dtype).double() for x in _infonce_inputs(B, M, D, scale, seed=M))
                t, p = t64.to(dtype), p64.to(dtype)
                nce64, g64 = _infonce_fwd_bwd("torch", t64, p64)
                nce_tr, g_tr = _infonce_fwd_bwd("triton", t, p)
                nce_th, g_th = _infonce_fwd_bwd("torch", t, p)
                e_n = [abs(x - nce64).item() / abs(nce64).item() for x in (nce_tr, nce_th)]
                e_g = [(x - g64).abs().max().item() for x in (g_tr, g_th)]
                hits = I._launch(t, p, False)[1]
                s32 = torch.bmm(t.float(), p.float().transpose(1, 2))
                ref = torch.softmax(s32, -1).argmax(1) == torch.arange(M, device=DEVICE)
                top2 = torch.softmax(torch.bmm(t64, p64.transpose(1, 2)), -1).topk(2, dim=1).values
                ambiguous = ((top2[:, 0] - top2[:, 1]) <= 1e-4 * top2[:, 0]) | (
                    (top2[:, 0] > 2.0 ** -151) & (top2[:, 0] < 2.0 ** -124))
                flips = hits != ref
                unexplained = int((flips & ~ambiguous).sum())
                floor_g = 1e-6 * g64.abs().max().item()
                ok = (e_n[0] <= 2 * e_n[1] + 1e-6 and e_g[0] <= 2 * e_g[1] + floor_g
                      and unexplained == 0)
                table.rows.append([dtype_name(dtype), scale, *e_n, *e_g, hits.float().mean().item(),
                                   int(flips.sum()), unexplained, PASS if ok else FAIL])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    table.notes.append(f"B={B}, M={M}, D={D}; targets ~ N(0, scale^2), pred ~ N(0, 1/D); "
                       f"nce_err relative, grad_err max |d pred - fp64|; {pinned_note()}")
    return table


# ---------------------------------------------------------------------------------------------
# Correctness: the Triton fbank (ssast_fast.features) against the float64 torch path
# ---------------------------------------------------------------------------------------------

#: name -> fbank options: SSAST's setting and two others (other rate, bins, window, energy).
FBANK_SETTINGS = {
    "ssast 16 kHz/128": dict(htk_compat=True, sample_frequency=16000, use_energy=False,
                             window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10),
    "kaldi 16 kHz/64": dict(sample_frequency=16000, num_mel_bins=64),
    "8 kHz/80 +energy": dict(sample_frequency=8000, num_mel_bins=80, use_energy=True),
}


def _clips(seconds: list[float], rate: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T] float64 noise + tones on DEVICE (zero tails) and int64 lengths, for fbank."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([int(s * rate) for s in seconds])
    t = torch.arange(int(lengths.max()), dtype=torch.float64) / rate
    waves = 0.05 * torch.randn(len(seconds), t.numel(), generator=g, dtype=torch.float64)
    waves += 0.3 * torch.sin(2 * math.pi * (200 + 900 * torch.rand(len(seconds), 1, generator=g,
                                                                  dtype=torch.float64)) * t)
    waves *= (torch.arange(t.numel()) < lengths[:, None])
    return waves.to(DEVICE), lengths


@section("fbank/parity", "check", gpu_s=55, dry_s=20)
def fbank_parity(args, budget: Budget) -> Table:
    """Triton fbank vs the float64 torch path on a batch of ragged clips (SSAST's setting and
    two others), by the golden fixtures' rule (ssast_fast.features.dispatch.fbank_mismatch);
    and every golden fbank fixture the kernel supports, when fixtures are available."""
    from ssast_fast.features import FbankOptions, fbank_batch
    from ssast_fast.features import dispatch as FD

    table = Table(["what", "case", "max_abs_err", "verdict"])
    try:
        from ssast_fast.features import fbank_triton
    except ImportError as e:
        table.rows.append(["batch", "all", "-", f"{SKIP} (triton missing: {e})"])
        return table
    seconds = [0.5, 0.3] if args.dry_run else [10.0, 7.3, 3.1, 1.05]
    settings = dict(list(FBANK_SETTINGS.items())[:2]) if args.dry_run else FBANK_SETTINGS
    with pinned():
        for name, kw in settings.items():
            o = FbankOptions(**kw)
            if not fbank_triton.supports(o):
                table.rows.append(["batch", name, "-", f"{SKIP} (unsupported: auto uses torch)"])
                continue
            waves, lengths = _clips(seconds, o.sample_frequency)
            ref64, _ = fbank_batch(waves, lengths, backend="torch", **kw)
            ref32, _ = fbank_batch(waves.float(), lengths, backend="torch", **kw)
            out, _ = fbank_batch(waves.float(), lengths, backend="triton", **kw)
            why = FD.fbank_mismatch(out, ref64, ref32)
            err = (out.double() - ref64).abs().max().item() if out.shape == ref64.shape else "-"
            table.rows.append(["batch", name, err, PASS if why is None else f"{FAIL}: {why}"])
        _fbank_golden_rows(table, args, budget, fbank_triton)
    table.notes.append(f"batch: clips of {seconds} s; {pinned_note()}")
    return table


def _fbank_golden_rows(table: Table, args, budget: Budget, fbank_triton) -> None:
    """One row per golden fbank fixture the Triton kernel supports (dry run: the short ones),
    the most common settings first; each new setting compiles the kernel again, so the rows stop
    (SKIPPED (budget)) after a share of the run: 40 s on a GPU."""
    try:
        from features.fbank_golden_util import cases, check_fbank, load
    except (ImportError, FileNotFoundError) as e:
        table.rows.append(["golden", "-", "-", f"{SKIP} (no golden fixtures: {e})"])
        return
    from ssast_fast.features import FbankOptions, fbank

    try:
        selected = cases(20_000 if args.dry_run else None)
    except FileNotFoundError as e:
        table.rows.append(["golden", "-", "-", f"{SKIP} (no golden fixtures: {e})"])
        return
    if args.dry_run:
        selected = selected[:3]
    setting = lambda c: json.dumps(c["kwargs"], sort_keys=True)  # noqa: E731
    counts = {}
    for c in selected:
        counts[setting(c)] = counts.get(setting(c), 0) + 1
    selected = sorted(selected, key=lambda c: -counts[setting(c)])  # stable: fixture order within
    stop = time.perf_counter() + (20 if args.dry_run else 40)
    for case in selected:
        if "expect_error" in case or not fbank_triton.supports(FbankOptions(**case["kwargs"])):
            continue
        if budget.left() < 10 or time.perf_counter() > stop:
            table.rows.append(["golden", case["name"], "-", BUDGET_SKIP])
            continue
        z = load(case)
        wav = torch.from_numpy(z["waveform"]).float()[None].to(DEVICE)
        out = fbank(wav, backend="triton", **case["kwargs"]).cpu().numpy()
        try:
            stats = check_fbank(case, out, z["fbank_f64"])
            table.rows.append(["golden", case["name"], stats["max_abs"], PASS])
        except AssertionError as e:
            table.rows.append(["golden", case["name"], "-", f"{FAIL}: {str(e)[:80]}"])


# ---------------------------------------------------------------------------------------------
# Correctness: masks on the device (ssast_fast.masking.sample_masks)
# ---------------------------------------------------------------------------------------------


def _adjacent_pairs(idx: torch.Tensor, n: int, t_dim: int) -> torch.Tensor:
    """Per row: masked cells whose right-hand neighbour (same frequency row) is masked too."""
    m = torch.zeros(idx.shape[0], n + 1, dtype=torch.bool)
    m.scatter_(1, idx.cpu(), True)
    right = m[:, 1:n + 1] & (torch.arange(1, n + 1) % t_dim != 0)
    return (m[:, :n] & right).sum(1).double()


def _mask_kernel_checks(table: Table) -> None:
    """The CUDA mask kernel's checks (benchmarks/bench_masks.gpu_checks, i.e.
    tests/masking/cuda_checks.py: self-check, CPU/GPU equality, graph-safe mode, no host sync,
    CUDA graph replays, torch.compile with CUDA graphs) as rows."""
    from ssast_fast import _ext

    if DEVICE != "cuda":
        table.rows.append(["kernel", "CUDA kernel checks", "no CUDA device (dry run)", "-", NA])
        return
    if _ext.get_cuda() is None:
        table.rows.append(["kernel", "CUDA kernel checks", "ssast_fast._C_cuda not built", "-", SKIP])
        return
    try:  # its helpers live with the pytest benchmark, which imports pytest
        from bench_masks import gpu_checks
    except ImportError as e:
        table.rows.append(["kernel", "CUDA kernel checks", f"n/a: {e}", "-", SKIP])
        return
    for name, result in gpu_checks(DEVICE):
        table.rows.append(["kernel", name, result[:160], "ok", PASS if result == "ok" else FAIL])


@section("masks/check", "check", gpu_s=20, dry_s=10)
def masks_check(args, budget: Budget) -> Table:
    """sample_masks on the device: valid rows (shape, range, no repeats), index 0 never masked
    in patch (cluster) mode, and its law against the reference generator on the CPU: per-index
    frequencies and the clustering (adjacent masked pairs) within 5 sigma; then the CUDA mask
    kernel's own checks (benchmarks/bench_masks.gpu_checks)."""
    from ssast_fast import _ext
    from ssast_fast.masking import batch_masks, sample_masks

    table = Table(["mode", "check", "value", "limit", "verdict"])
    n, M, t_dim, R = (128, 40, 16, 400) if args.dry_run else (512, 400, 64, 4000)
    R_ref = R if _ext.available() else min(R, 1000)
    # the dry run exercises the tensor formulation (the CUDA path without the kernel) on the CPU
    backend = "torch" if DEVICE == "cpu" else "auto"
    for cluster in (True, False):
        mode = "patch" if cluster else "frame"
        idx = sample_masks(R, n, M, t_dim, cluster, device=DEVICE, backend=backend)
        srt = idx.sort(1).values
        valid = (tuple(idx.shape) == (R, M) and idx.dtype == torch.int64 and int(idx.min()) >= 0
                 and int(idx.max()) < n and bool((srt[:, 1:] > srt[:, :-1]).all()))
        table.rows.append([mode, "valid rows", f"{R} x {M}", f"[0, {n}), distinct", PASS if valid else FAIL])
        if cluster:
            zero = int((idx == 0).sum())
            table.rows.append([mode, "index 0 masked", zero, 0, PASS if zero == 0 else FAIL])
        random.seed(0)
        ref = batch_masks(R_ref, n, M, t_dim, cluster)
        p_dev = torch.bincount(idx.flatten().cpu(), minlength=n).double() / R
        p_ref = torch.bincount(ref.flatten(), minlength=n).double() / R_ref
        sigma = ((p_ref * (1 - p_ref)).clamp_min(1e-4) * (1 / R + 1 / R_ref)).sqrt()
        z = ((p_dev - p_ref).abs() / sigma).max().item()
        table.rows.append([mode, "per-index frequency", f"max {z:.2f} sigma", "5 sigma",
                           PASS if z <= 5 else FAIL])
        a_dev, a_ref = _adjacent_pairs(idx, n, t_dim), _adjacent_pairs(ref, n, t_dim)
        sig = math.sqrt(a_dev.var().item() / R + a_ref.var().item() / R_ref) or 1e-9
        za = abs(a_dev.mean().item() - a_ref.mean().item()) / sig
        table.rows.append([mode, "adjacent pairs per row",
                           f"{a_dev.mean().item():.2f} vs {a_ref.mean().item():.2f} ({za:.2f} sigma)",
                           "5 sigma", PASS if za <= 5 else FAIL])
    _mask_kernel_checks(table)
    table.notes.append(f"{n} patches (t_dim {t_dim}), {M} masked; {R} device rows (backend "
                       f"{backend!r}, auto resolved to {_resolved('masks')}) vs {R_ref} reference "
                       f"rows ({'C++' if _ext.available() else 'pure-Python'} generator)")
    return table


# ---------------------------------------------------------------------------------------------
# Correctness: the model (golden fixtures; one joint step against the reference-equivalent path)
# ---------------------------------------------------------------------------------------------


def _tensors(sd) -> dict[str, torch.Tensor]:
    import numpy as np

    return {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}


def _golden_model(case_id: str, man: dict, attn: str, heads: str):
    """The golden case's model (pretraining: its weights; fine-tuning: built from its pretrained
    source as the reference does, then the head recipe)."""
    from golden import head_recipe, state_dict

    from ssast_fast import ASTModel

    spec = man["cases"][case_id]["spec"]
    ctor = dict(spec["ctor"])
    if man["cases"][case_id]["stage"] == "pretrain":
        model = ASTModel(**ctor, attn_backend=attn, heads_backend=heads)
        model.load_state_dict(_tensors(state_dict(case_id)), strict=True)
        return model
    src = {"module." + k: v for k, v in _tensors(state_dict(spec["source"])).items()}
    model = ASTModel(**dict(ctor, load_pretrained_mdl_path=src), attn_backend=attn, heads_backend=heads)
    with torch.no_grad():
        for k, v in head_recipe(case_id).items():
            model.get_parameter(k).copy_(torch.from_numpy(v))
    return model


@section("model/golden", "check", gpu_s=20, dry_s=15)
def model_golden(args, budget: Budget) -> Table:
    """The golden model cases on the device, fp32 (TF32 off), per attention and heads backend:
    rel-L2 of the loss / logits against the reference's (limit 1e-5; acc up to one tie flip).
    Fixtures: --golden DIR / SSAST_GOLDEN, else what tests/golden.py finds."""
    table = Table(["case", "task", "attn", "heads", "rel_err", "acc_flips", "verdict"])
    try:
        from golden import golden_root, model_manifest, npz, rel_l2

        root, man = golden_root(), model_manifest()
    except (FileNotFoundError, ImportError, OSError) as e:
        table.rows.append(["-", "-", "-", "-", "-", "-",
                           f"{SKIP} (no golden fixtures: {e}; pass --golden DIR)"])
        return table
    prev = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cases = man["cases"]
    combos = [("auto", "auto"), ("sdpa", "torch"), ("triton", "triton")]
    if args.dry_run:  # the two smallest inputs, the default backends (interpreted Triton is slow)
        size = lambda c: c["spec"]["ctor"]["input_fdim"] * c["spec"]["ctor"]["input_tdim"]  # noqa: E731
        cases = dict(sorted(cases.items(), key=lambda kv: size(kv[1]))[:2])
        combos = combos[:1]
    try:
        with pinned():
            for cid, case in cases.items():
                z = npz(cid)  # the subset redraws the input from its recipe
                x = torch.from_numpy(z[case["input"]["key"]]).to(DEVICE)
                for attn, heads in combos:
                    if budget.left() < 10:
                        table.rows.append([cid, "-", attn, heads, "-", "-", BUDGET_SKIP])
                        continue
                    model = _golden_model(cid, man, attn, heads).to(DEVICE)
                    for task, meta in case["tasks"].items():
                        flips = ""
                        if case["stage"] == "pretrain":
                            idx = torch.from_numpy(z[meta["masks"]["key"]]).to(DEVICE)
                            call = meta["forward_call"]
                            out = model(x, call["task"], cluster=call["cluster"], mask_index=idx)
                            if task == "mpc":
                                n = idx.numel()
                                flips = abs(round(out[0].item() * n) - round(float(z["mpc.acc"]) * n))
                                err = rel_l2(out[1].item(), z["mpc.nce"])
                            else:
                                err = rel_l2(out.item(), z["mpg.mse"])
                        else:
                            err = rel_l2(model(x, task).detach().cpu(), z[f"{task}.logits"])
                        ok = err <= 1e-5 and (flips == "" or flips <= 1)
                        table.rows.append([cid, task, attn, heads, err, flips, PASS if ok else FAIL])
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev
    table.notes.append(f"fixtures: {root}")
    return table


def _rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@section("model/joint_parity", "check", gpu_s=15, dry_s=10)
def joint_parity(args, budget: Budget) -> Table:
    """One fp32 joint pretraining step (mpc + mpg, two passes) of ssast_fast (auto attention and
    heads, batched) against the reference-equivalent path (benchmarks/reference_path.py: eager
    attention, per-sample loops) with the same masks: nce and mse rel <= 1e-5, all parameter
    gradients rel-L2 <= 3e-5 (TF32 off)."""
    from reference_path import reference_mpc, reference_mpg

    from ssast_fast import ASTModel, _ext
    from ssast_fast.masking import batch_masks

    table = Table(["quantity", "rel_err", "limit", "verdict"])
    size, B, frames, M = ("tiny", 2, 128, 20) if args.dry_run else ("base", 4, 1024, 400)
    shape = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=frames,
                 model_size=size)
    prev = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with pinned():
            torch.manual_seed(0)
            ref_model = ASTModel(**shape, attn_backend="eager", heads_backend="torch").to(DEVICE)
            ours = copy.deepcopy(ref_model)
            ours.set_attn_backend("auto")
            ours.heads_backend = "auto"
            x = torch.randn(B, frames, 128, device=DEVICE)
            random.seed(1)  # reference_joint_step's body: B mpc masks drawn, then B mpg masks
            _, nce_ref = reference_mpc(ref_model, x, M)
            mse_ref = reference_mpg(ref_model, x, M)
            (nce_ref + 10 * mse_ref).backward()
            random.seed(1)
            with _ext.pure():  # the same draws, in the same order
                idx = [batch_masks(B, ours.num_patches, M, ours.t_dim, True).to(DEVICE) for _ in range(2)]
            _, nce, mse = ours.joint_losses(x, *idx)
            (nce + 10 * mse).backward()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev
    g_ref = torch.cat([p.grad.flatten() for p in ref_model.parameters() if p.grad is not None])
    g_ours = torch.cat([q.grad.flatten() for p, q in zip(ref_model.parameters(), ours.parameters())
                        if p.grad is not None])
    # the worst parameter among those with a gradient of some size (some are analytically 0:
    # the InfoNCE gradient sums to 0 over predictions, so cpredlayer's output bias gets noise)
    worst = max(((_rel_l2(q.grad, p.grad), n) for (n, p), q in
                 zip(ref_model.named_parameters(), ours.parameters())
                 if p.grad is not None and p.grad.norm() > 1e-4 * g_ref.norm()), default=(0.0, "-"))
    for name, err, lim in (("nce", _rel_l2(nce.detach(), nce_ref.detach()), 1e-5),
                           ("mse", _rel_l2(mse.detach(), mse_ref.detach()), 1e-5),
                           ("gradients (all parameters)", _rel_l2(g_ours, g_ref), 3e-5)):
        table.rows.append([name, err, lim, PASS if err <= lim else FAIL])
    table.rows.append([f"worst parameter ({worst[1]})", worst[0], "info", NA])
    table.notes.append(f"{size}, B={B}, {frames} frames, {M} masked per pass; ours resolved "
                       f"attention/heads: {_resolved('attention')}, {_resolved('infonce')}")
    return table


def _resolved(op: str) -> str:
    """The backends ``auto`` resolved to for ``op`` so far (ssast_fast.ops.dispatch)."""
    from ssast_fast.ops import dispatch

    got = sorted({d["backend"] for d in dispatch.record() if d["op"] == op})
    return "/".join(got) or "-"


# ---------------------------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------------------------


def _ratio_verdict(args, value: float, target: float) -> str:
    if args.dry_run:
        return f"{NA} (dry run)"
    return PASS if value >= target else FAIL


@section("attention/bench", "bench", gpu_s=45, dry_s=15)
def attention_bench(args, budget: Budget) -> Table:
    """Attention forward + backward at B=24, H=12, N=514, D=64, bf16, over the packed qkv the
    model passes: the Triton kernel, SDPA (its own pick and limited to each of its kernels),
    and ``auto``; targets: Triton / SDPA's best >= 1.0x, auto / best of all >= 0.98x."""
    from ssast_fast.ops.attention import SDPA_KERNELS, attention

    B, H, N, D, dtype = 24, 12, 514, 64, torch.bfloat16
    names = ["triton", "sdpa", *SDPA_KERNELS, "auto"]
    if args.dry_run:
        B, H, N, D, dtype, names = 1, 2, 40, 64, torch.float32, ["triton", "sdpa", "auto"]
    g = torch.Generator(device=DEVICE).manual_seed(0)
    qkv = torch.randn(B, N, 3, H, D, generator=g, device=DEVICE, dtype=dtype)
    do = torch.randn(B, H, N, D, generator=g, device=DEVICE, dtype=dtype)

    def step(backend):
        def run():
            leaf = qkv.detach().requires_grad_()
            q, k, v = leaf.permute(2, 0, 3, 1, 4).unbind(0)
            attention(q, k, v, backend=backend).backward(do)
        return run

    times: dict[str, float | str] = {}
    for name in names:
        try:  # the warm-up calls autotune (and, for auto, settle the measured choice)
            times[name] = time_ms(step(name), warmup=3, reps=args.reps)
        except Exception as e:  # noqa: BLE001 - e.g. an SDPA kernel that does not take these inputs
            times[name] = f"n/a: {str(e).strip().splitlines()[0][:70]}"
    ok = {k: v for k, v in times.items() if isinstance(v, float)}
    sdpa = [v for k, v in ok.items() if k.startswith("sdpa")]
    best_sdpa = min(sdpa) if sdpa else math.nan
    best = min([v for k, v in ok.items() if k != "auto"], default=math.nan)
    table = Table(["backend", "fwd+bwd_ms", "TFLOP/s", "best_sdpa/this"])
    flops = 3.5 * 4.0 * B * H * N * N * D  # fwd 4 B H N^2 D, bwd 2.5x
    for name, t in times.items():
        if isinstance(t, str):
            table.rows.append([name, t, "-", "-"])
        else:
            table.rows.append([name, t, flops / t / 1e9, f"{best_sdpa / t:.3g}x"])
    r_tri = best_sdpa / ok["triton"] if "triton" in ok else math.nan
    r_auto = best / ok["auto"] if "auto" in ok else math.nan
    table.verdict("Triton / best SDPA (attention fwd+bwd)", f"{r_tri:.3g}x", ">= 1.0x",
                  _ratio_verdict(args, r_tri, 1.0))
    table.verdict("auto / best (attention fwd+bwd)", f"{r_auto:.3g}x", ">= 0.98x",
                  _ratio_verdict(args, r_auto, 0.98))
    table.notes.append(f"B={B}, H={H}, N={N}, D={D}, {dtype_name(dtype)}; median of {args.reps} "
                       f"({DEVICE} timer); auto resolved to {_resolved('attention')}")
    return table


def step_flops(model, mask: int, passes: int) -> float:
    """Model FLOPs of one clip's training step, forward x3: every token of each encoder pass
    (patch embedding, QKV / projection / MLP GEMMs, q k^T and p v), the prediction heads on the
    masked tokens (cpredlayer and gpredlayer once each) and the InfoNCE scores."""
    from torch import nn

    P = model.num_patches
    N, C = P + model.cls_token_num, model.original_embedding_dim
    p = model.fshape * model.tshape
    encoder = 2 * P * C * p + len(model.v.blocks) * (24 * N * C * C + 4 * N * N * C)
    heads = sum(2 * mask * m.in_features * m.out_features
                for head in (model.cpredlayer, model.gpredlayer) for m in head
                if isinstance(m, nn.Linear))
    return 3.0 * (passes * encoder + heads + 2 * mask * mask * p)


def peak_tflops(args) -> tuple[float | None, str]:
    """The dense bf16 peak to divide by, and where it comes from."""
    if args.peak_tflops:
        return args.peak_tflops, "--peak-tflops"
    if DEVICE != "cuda":
        return None, "no GPU"
    name = torch.cuda.get_device_name(0)
    if "H100" in name or "H200" in name:
        if "PCIe" in name:
            return 756.0, f"{name}: H100 PCIe dense bf16 756 TFLOP/s"
        if "NVL" in name:
            return 835.0, f"{name}: NVL dense bf16 835 TFLOP/s"
        return 989.0, f"{name}: H100/H200 SXM dense bf16 989 TFLOP/s"
    return None, f"{name}: peak unknown (pass --peak-tflops)"


@section("model/joint_step", "bench", gpu_s=100, dry_s=25)
def joint_step(args, budget: Budget) -> Table:
    """The Base joint pretraining step (B=24, 1024 frames, mask 400; fwd + bwd + Adam): the
    reference-equivalent fp32 path (eager attention, per-sample loops, Python masks) vs ours
    (bf16 autocast, torch.compile, device masks, auto kernels) with two passes and with one shared
    mask; clips/s, speedup (target >= 4x) and MFU (target >= 40%)."""
    from reference_path import reference_joint_step

    from ssast_fast import ASTModel
    from ssast_fast.masking import sample_masks

    size, B, frames, M = ("tiny", 2, 256, 40) if args.dry_run else ("base", 24, 1024, 400)
    shape = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=frames,
                 model_size=size)
    peak, peak_src = peak_tflops(args)
    x = torch.randn(B, frames, 128, device=DEVICE)
    table = Table(["variant", "precision", "passes", "ms/step", "clips/s", "TFLOP/s", "MFU",
                   "vs_reference"])
    # cost estimates (s): the reference is cheap, each compiled variant compiles cold
    est = {"reference": 3, "ours": 8, "ours_shared": 6} if args.dry_run else {
        "reference": 20, "ours": 80, "ours_shared": 60}
    results: dict[str, float] = {}

    def run(variant: str) -> float:
        torch.manual_seed(0)
        ours = variant != "reference"
        model = ASTModel(**shape, attn_backend="auto" if ours else "eager",
                         mask_mode="fast" if ours else "reference",
                         heads_backend="auto" if ours else "torch").to(DEVICE)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=5e-7)
        n_idx = 1 if variant == "ours_shared" else 2

        def losses(fn):
            idx = [sample_masks(B, model.num_patches, M, model.t_dim, device=DEVICE)
                   for _ in range(n_idx)]
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                _, nce, mse = fn(x, *idx)
            return nce + 10 * mse

        if ours:  # settle the kernel choices eagerly at this step's shapes, then compile
            losses(model.joint_losses).backward()
            model.zero_grad(set_to_none=True)
        joint = torch.compile(model.joint_losses) if ours and not args.dry_run else model.joint_losses

        def step():
            opt.zero_grad(set_to_none=True)
            if ours:
                losses(joint).backward()
            else:
                reference_joint_step(model, x, M)
            opt.step()

        ms = time_ms(step, warmup=2 if not ours else 3, reps=max(3, args.reps // 4))
        del model, opt
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        return ms

    flops_model = ASTModel(**shape)
    for variant in ("reference", "ours", "ours_shared"):
        passes, prec = (1, "bf16") if variant == "ours_shared" else (2, "fp32" if variant == "reference" else "bf16")
        if budget.left() < est[variant]:
            table.rows.append([variant, prec, passes, BUDGET_SKIP, "-", "-", "-", "-"])
            continue
        ms = results[variant] = run(variant)
        tflops = step_flops(flops_model, M, passes) * B / (ms / 1e3) / 1e12
        mfu = 100 * tflops / peak if peak and prec == "bf16" else math.nan
        speedup = results["reference"] / ms if "reference" in results else math.nan
        table.rows.append([variant, prec, passes, ms, B / (ms / 1e3), tflops,
                           f"{mfu:.1f}%" if math.isfinite(mfu) else "-", f"{speedup:.2f}x"])
        if variant == "ours":
            table.verdict("joint step: ours (bf16, compile, 2 passes) / reference fp32",
                          f"{speedup:.2f}x", ">= 4x", _ratio_verdict(args, speedup, 4.0))
        if variant != "reference":
            table.verdict(f"joint step MFU ({variant}, {passes} pass{'es' if passes > 1 else ''})",
                          f"{mfu:.1f}%" if math.isfinite(mfu) else "-", ">= 40%",
                          _ratio_verdict(args, mfu, 40.0) if peak or args.dry_run else NA)
    table.notes.append(f"{size}, B={B}, {frames} frames, mask {M}; model FLOPs per clip and step "
                       f"(forward x3): {step_flops(flops_model, M, 2) / 1e9:.0f} G with two passes, "
                       f"{step_flops(flops_model, M, 1) / 1e9:.0f} G with one; peak used: "
                       f"{peak_src}; ours resolved attention {_resolved('attention')}, "
                       f"InfoNCE {_resolved('infonce')}")
    return table


@section("fbank/bench", "bench", gpu_s=15, dry_s=10)
def fbank_bench(args, budget: Budget) -> Table:
    """Real-time factor of fbank on a batch of 10 s clips at SSAST's setting (16 kHz, 128 bins):
    seconds of audio per second of compute, ``auto`` (the Triton kernel on CUDA once it passed
    its self-check) and the torch path; target for auto >= 20,000x."""
    from ssast_fast import _ext
    from ssast_fast.features import fbank_batch

    kw = FBANK_SETTINGS["ssast 16 kHz/128"]
    n_clips, seconds = (2, 1.0) if args.dry_run else (64, 10.0)
    waves, lengths = _clips([seconds] * n_clips, 16000)
    waves = waves.float()
    table = Table(["backend", "ms/batch", "real-time factor"])
    rtf = {}
    for backend in ("auto", "torch") + (("cpp",) if DEVICE == "cpu" and _ext.available() else ()):
        ms = time_ms(lambda: fbank_batch(waves, lengths, backend=backend, **kw), warmup=2,
                     reps=max(2, args.reps // 4))
        rtf[backend] = n_clips * seconds / (ms / 1e3)
        table.rows.append([backend, ms, f"{rtf[backend]:,.0f}x"])
    table.verdict("fbank real-time factor (auto, 10 s clips)", f"{rtf['auto']:,.0f}x", ">= 20,000x",
                  _ratio_verdict(args, rtf["auto"], 20_000))
    table.notes.append(f"{n_clips} clips x {seconds} s; auto resolved to {_resolved('fbank')}"
                       + ("" if _ext.available() else "; C++ extension missing: no cpp row"))
    return table


@section("infonce/bench", "bench", gpu_s=10, dry_s=5)
def infonce_bench(args, budget: Budget) -> Table:
    """InfoNCE forward + backward at B=24, M=400, D=256 (no target; what auto chooses between):
    the loss alone, batched torch vs the Triton kernels, and heads + loss from the encoder output
    (C=768): per-sample loops vs batched torch vs batched with the Triton op."""
    from ssast_fast.model.heads import gather_rows
    from ssast_fast.ops.infonce import infonce

    B, M, P, C, D = (2, 40, 64, 64, 32) if args.dry_run else (24, 400, 512, 768, 256)
    dtypes = (torch.float32,) if args.dry_run else (torch.float32, torch.bfloat16)
    table = Table(["dtype", "what", "variant", "fwd+bwd_ms", "vs_torch_batched"])
    try:  # its helpers live with the pytest benchmark, which imports pytest
        from bench_infonce import CLS, make_inputs, make_step, zero_grads
    except ImportError as e:
        table.rows.append(["-", "-", "-", f"n/a: {e}", "-"])
        return table
    for dtype in dtypes:
        h, patches, idx, cpred = make_inputs(B, M, P, C, D, dtype, DEVICE)
        with torch.no_grad():
            pred = cpred(gather_rows(h, idx + CLS)).requires_grad_()
        targets = gather_rows(patches, idx)

        def loss_step(backend):
            def step():
                infonce(targets, pred, backend=backend)[1].backward()
            return step

        def clear():
            pred.grad = None

        times = {("loss", v): time_ms(loss_step(b), reps=args.reps, setup=clear)
                 for v, b in (("batched", "torch"), ("fused", "triton"))}
        for variant in ("loop", "batched", "fused"):
            times[("heads+loss", variant)] = time_ms(
                make_step(variant, h, patches, idx, cpred), reps=args.reps,
                setup=lambda: zero_grads(h, cpred))
        for (what, variant), ms in times.items():
            table.rows.append([dtype_name(dtype), what, variant, ms,
                               f"{times[(what, 'batched')] / ms:.2f}x"])
    table.notes.append(f"B={B}, M={M} of P={P} patches, C={C}, D={D}; median of {args.reps} "
                       f"({DEVICE} timer); vs_torch_batched = batched time / this time")
    return table


@section("masks/bench", "bench", gpu_s=10, dry_s=10)
def masks_bench(args, budget: Budget) -> Table:
    """sample_masks at B=24 and B=1024 for 512/400/64 and 1212/400/101 (no target): the
    compiled sampler (the CUDA kernel; the C++ core in the dry run) against the tensor-op path
    (benchmarks/bench_masks.gpu_bench)."""
    table = Table(["path", "B", "setting", "ms"])
    try:  # its helpers live with the pytest benchmark, which imports pytest
        from bench_masks import gpu_bench
    except ImportError as e:
        table.rows.append(["-", "-", "-", f"n/a: {e}"])
        return table
    reps = 2 if args.dry_run else args.reps
    table.rows.extend(gpu_bench(lambda fn: time_ms(fn, warmup=1, reps=reps), DEVICE))
    table.notes.append(f"median of {reps} ({DEVICE} timer); auto resolved to {_resolved('masks')}")
    return table


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _section_json(kind: str, table: Table) -> dict:
    return {"kind": kind, "columns": table.columns, "rows": table.rows, "notes": table.notes,
            "failures": table.failures, "verdicts": [list(v) for v in table.verdicts]}


def _summary_verdicts(name: str, kind: str, table: Table) -> list[tuple]:
    """Final-table lines of one section: a check's row count and outcome; a bench's targets."""
    if kind == "bench":
        return [(name, *v) for v in table.verdicts]
    cells = [r[-1] for r in table.rows]
    failed = sum(str(c).startswith(FAIL) for c in cells)
    skipped = sum(str(c).startswith((SKIP, BUDGET_SKIP)) for c in cells)
    passed = sum(c == PASS for c in cells)
    verdict = FAIL if failed else (PASS if passed else SKIP)
    return [(name, "rows", f"{passed} pass / {failed} fail / {skipped} skipped", "all PASS",
             verdict)]


def _final_table(lines: list[tuple]) -> Table:
    table = Table(["section", "item", "value", "target", "verdict"], [list(x) for x in lines])
    checks = [x for x in lines if x[0] in CHECKS]
    speed = [x for x in lines if x[0] not in CHECKS]
    table.notes.append("correctness: " + (FAIL if any(x[-1] == FAIL for x in checks) else PASS))
    met = sum(x[-1] == PASS for x in speed)
    table.notes.append(f"speed targets met: {met} of {len(speed)}")
    return table


CHECKS = {s.name for s in SECTIONS if s.kind == "check"} | {"resources", "preflight"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="folder for gpu_suite.json, gpu_suite.log and the "
                    "resource report (written after every section)")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds for the whole run (default 360; 900 with --dry-run)")
    ap.add_argument("--list", action="store_true", help="list the sections and exit")
    ap.add_argument("--only", action="append", default=[],
                    help="run sections whose name contains this (repeatable)")
    ap.add_argument("--quick", action="store_true", help="fewer timed repetitions")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions per benchmark")
    ap.add_argument("--json", type=Path, help="also write the JSON report to this file")
    ap.add_argument("--golden", type=Path, help="golden fixtures folder (sets SSAST_GOLDEN)")
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak of this GPU for the MFU")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU: every section on the CPU at small shapes, Triton interpreted "
                         "(checks the suite itself; speed verdicts n/a)")
    args = ap.parse_args(argv)
    global DEVICE

    if args.list:
        for s in SECTIONS:
            print(f"{s.name:20s} {s.kind:6s} ~{s.gpu_s:>4.0f} s  "
                  f"{(s.fn.__doc__ or '').strip().splitlines()[0]}")
        print(f"{'resources':20s} check  (background)  the resource report (compile_report.py)")
        return 0
    if args.golden:
        os.environ["SSAST_GOLDEN"] = str(args.golden)
    if args.dry_run:
        DEVICE = "cpu"
        args.reps = min(args.reps, 2)
        torch.set_num_threads(1)  # numbers are meaningless here; one thread survives a loaded box
        # Must precede the first import of the kernels (sections import them lazily).
        os.environ["TRITON_INTERPRET"] = "1"
        if "ssast_fast.ops.attention" in sys.modules:
            print("gpu_suite: --dry-run must set TRITON_INTERPRET before the kernels import")
            return 2
    elif os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("gpu_suite: unset TRITON_INTERPRET (the suite times compiled GPU kernels)")
        return 2
    elif not torch.cuda.is_available():
        print("gpu_suite: no CUDA device available; nothing to run (GPU checks and benchmarks "
              "are still to be measured on a GPU machine).")
        return 0
    if args.quick:
        args.reps = min(args.reps, 5)
    budget = Budget(args.deadline or (900.0 if args.dry_run else 360.0))
    out = args.out
    if out is None:
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="gpu_suite_"))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gpu_suite.log", "w") as log, contextlib.redirect_stdout(Tee(sys.stdout, log)), \
            contextlib.redirect_stderr(Tee(sys.stderr, log)):
        return _run(args, budget, out)


def _run(args, budget: Budget, out: Path) -> int:
    from ssast_fast.ops import dispatch

    chosen = [s for s in SECTIONS if not args.only or any(o in s.name for o in args.only)]
    with_resources = not args.only or any(o in "resources" for o in args.only)
    env = environment()
    print("gpu_suite: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print(f"gpu_suite: deadline {budget.deadline:.0f} s, output in {out}")
    report = {"environment": env, "dry_run": args.dry_run, "deadline_s": budget.deadline,
              "sections": {}, "final": []}
    lines: list[tuple] = []

    def save() -> None:
        report["elapsed_s"] = round(budget.elapsed(), 1)
        report["final"] = [list(x) for x in lines]
        text = json.dumps(report, indent=1, default=str)
        for path in [out / "gpu_suite.json"] + ([args.json] if args.json else []):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    proc = start_resource_report(args.dry_run, out) if with_resources else None
    table = preflight(env)
    print_table("preflight", table)
    report["sections"]["preflight"] = _section_json("preflight", table)
    save()
    measured_fresh = False
    for s in chosen:
        if s.kind == "bench" and not measured_fresh:  # choices settled under pinned configs
            dispatch.reset()  # are not what the speed rows should use: measure them again
            measured_fresh = True
        est = s.dry_s if args.dry_run else s.gpu_s
        title = f"{s.name} ({s.kind})"
        if budget.left() < est:
            print(f"\n== {title} ==\n  {BUDGET_SKIP}: ~{est:.0f} s needed, {budget.left():.0f} s left")
            report["sections"][s.name] = {"kind": s.kind, "skipped": BUDGET_SKIP}
            lines.append((s.name, "section", f"~{est:.0f} s needed", "-", BUDGET_SKIP))
            save()
            continue
        t0 = time.perf_counter()
        try:
            table = s.fn(args, budget)
        except Exception:  # noqa: BLE001 - report and go on with the other sections
            tb = traceback.format_exc()
            print(f"\n== {title} ==\n  ERROR\n{tb}")
            report["sections"][s.name] = {"kind": s.kind, "error": tb}
            lines.append((s.name, "section", "raised (see log)", "-", FAIL))
            save()
            continue
        table.notes.append(f"section time {time.perf_counter() - t0:.1f} s")
        print_table(title, table)
        report["sections"][s.name] = _section_json(s.kind, table)
        lines.extend(_summary_verdicts(s.name, s.kind, table))
        save()
    if with_resources:
        table = resource_section(proc, out, args.dry_run, budget)
        print_table("resources (check)", table)
        report["sections"]["resources"] = _section_json("check", table)
        lines.extend(_summary_verdicts("resources", "check", table))
    final = _final_table(lines)
    print_table(f"final ({budget.elapsed():.0f} s of {budget.deadline:.0f} s)", final)
    save()
    failed = sorted({x[0] for x in lines if x[-1] == FAIL})
    print("\ngpu_suite: " + (f"FAILED: {', '.join(failed)}" if failed else "all sections passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
