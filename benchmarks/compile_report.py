"""Resource report of every Triton kernel at every launch configuration production can select,
compiled for sm_90 (H100/H200) without a GPU (Triton bundles ptxas).

    python benchmarks/compile_report.py [--subset] [--json OUT] [--jobs N] [--arch 90]
    python benchmarks/compile_report.py --candidates     # the wider lists the configs come from

Per kernel and config it prints the shared memory (``metadata.shared``), registers, spill stores
and loads and the stack frame (from the ``ptxas -v`` log of the compile: ``n_regs``/``n_spills``
are only filled in on a GPU), and exits 1 when a selectable config needs more than 232,448 bytes
of shared memory (Hopper's limit per block) or spills. What is compiled:

* attention (ssast_fast.ops.attention): fwd, bwd_preprocess, bwd_dkdv, bwd_dq for float16,
  bfloat16 and float32 at head dims 32/64/128, each config of the kernel's table; a (dtype, D)
  without configs is reported as running on the torch path;
* InfoNCE (ssast_fast.ops.infonce): the rows kernel and the columns kernel (with and without the
  gradient) for each dtype and BLOCK_D of the tables (every D that ``supports()`` admits maps to
  one of them; the model uses D = 256);
* fbank (ssast_fast.features.fbank_triton): the spectrum kernel for every supported FFT size and
  the mel kernel; the settings 16 kHz/128 bins, 16 kHz/64, 8 kHz/80, 44.1 kHz/128 and 48 kHz/64
  map to them (options are runtime arguments: no other compiled variant exists).

Kernels are compiled as Triton's JIT specializes them at launch: 16-byte aligned pointers,
strides that are multiples of 16 and a unit last-dim stride (the launchers copy inputs that are
not), sizes unspecialized (``do_not_specialize``). Compilation runs in ``--jobs`` processes.

From Python (the GPU suite's preflight): :func:`run_report` returns one dict per compiled
kernel config (keys of :class:`Row`), running the report in a clean subprocess.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
SHARED_LIMIT = 232_448  # bytes of shared memory per block on sm_90 (227 KiB)
HEAD_DIMS = (32, 64, 128)
DTYPES = ("float16", "bfloat16", "float32")
_PTR = {"float16": "*fp16", "bfloat16": "*bf16", "float32": "*fp32"}
#: Settings the fbank kernels must serve (name -> FbankOptions kwargs).
FBANK_SETTINGS = {
    "16k/128 (SSAST)": dict(sample_frequency=16000, num_mel_bins=128, htk_compat=True,
                            window_type="hanning"),
    "16k/64": dict(sample_frequency=16000, num_mel_bins=64),
    "8k/80": dict(sample_frequency=8000, num_mel_bins=80, snip_edges=False, dither=1.0),
    "44.1k/128": dict(sample_frequency=44100, num_mel_bins=128, use_energy=True),
    "48k/64": dict(sample_frequency=48000, num_mel_bins=64, use_energy=True, htk_compat=False),
}
#: --candidates: (BLOCK_M, BLOCK_N, num_warps, num_stages) lists the tables were chosen from.
CANDIDATES = {
    "attention": {
        "fwd": [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3),
                (128, 32, 4, 4), (64, 128, 4, 3), (64, 32, 4, 3), (64, 64, 4, 2),
                (64, 32, 4, 2), (32, 32, 4, 2), (64, 64, 8, 2), (32, 64, 4, 2), (16, 32, 4, 2),
                (32, 16, 4, 2), (16, 16, 4, 2), (32, 32, 8, 2)],
        "bwd_dkdv": [(32, 128, 8, 2), (32, 128, 4, 3), (64, 128, 8, 2), (32, 64, 4, 3),
                     (64, 64, 4, 2), (16, 128, 8, 3), (32, 64, 4, 2), (16, 64, 4, 2),
                     (16, 32, 4, 2), (32, 32, 4, 2), (16, 16, 4, 2), (32, 32, 8, 2)],
        "bwd_dq": [(128, 32, 8, 2), (128, 32, 4, 3), (128, 64, 8, 2), (64, 32, 4, 3),
                   (64, 64, 4, 2), (128, 16, 8, 3), (64, 32, 4, 2), (64, 16, 4, 2),
                   (32, 16, 4, 2), (32, 32, 4, 2), (16, 16, 4, 2), (32, 32, 8, 2)],
    },
    "infonce": {
        "rows": [(64, 64, 4, 3), (64, 32, 4, 3), (32, 64, 4, 3), (128, 64, 8, 3),
                 (32, 32, 4, 2), (64, 32, 4, 2), (32, 64, 8, 2), (16, 32, 4, 2), (32, 16, 4, 2),
                 (16, 16, 4, 2), (64, 64, 8, 2)],
        "cols": [(64, 64, 8, 2), (32, 64, 4, 2), (64, 32, 4, 2), (32, 32, 4, 3),
                 (32, 32, 4, 2), (16, 32, 4, 2), (32, 64, 8, 2), (32, 16, 4, 2), (16, 16, 4, 2),
                 (64, 32, 8, 2), (16, 32, 8, 2)],
    },
}
INFONCE_BLOCK_DS = (16, 32, 64, 128, 256, 512)


@dataclasses.dataclass
class Row:
    """One compiled kernel config and its resources (bytes; registers per thread)."""

    family: str  # attention | infonce | fbank
    kernel: str
    dtype: str
    dim: str  # head dim, BLOCK_D, or FFT size / settings
    config: str
    shared: Optional[int] = None
    registers: Optional[int] = None
    spill_stores: Optional[int] = None
    spill_loads: Optional[int] = None
    stack: Optional[int] = None
    seconds: float = 0.0
    error: Optional[str] = None
    selectable: bool = True  # False: a --candidates config outside the tables, or a torch-path row

    @property
    def ok(self) -> bool:
        return (self.error is None and self.shared is not None
                and self.shared <= SHARED_LIMIT and not self.spill_stores and not self.spill_loads)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ok": self.ok}


@dataclasses.dataclass
class Job:
    """A kernel to compile: ``module.KERNELS[kernel]`` (or attribute ``kernel``), its signature
    (pointer types; ints not listed are unspecialized i32), constexprs and launch options."""

    row: Row
    module: str
    kernel: str
    ptrs: dict
    floats: tuple
    consts: dict
    options: dict
    cost: float = 1.0


# ---- what production can select ---------------------------------------------------------------


def _fmt(cfg) -> str:
    bm, bn, w, s = cfg
    return f"{bm}x{bn} w{w} s{s}"


def _configs(tuned, cls, extra: list, subset: bool, candidates: bool) -> tuple[tuple, list]:
    """(the table's configs for ``cls``, the configs to compile): all of them, the default
    only (subset), or also the candidates ``extra``."""
    table = tuned.configs.get(cls, ())
    if candidates:
        return table, list(dict.fromkeys([*table, *map(tuple, extra)]))
    return table, list(table[:1] if subset else table)


def _attention_jobs(subset: bool, candidates: bool) -> tuple[list[Job], list[Row]]:
    from ssast_fast.ops import attention as A

    jobs, torch_path = [], []
    for dtype in DTYPES:
        ptr, prec = _PTR[dtype], ("ieee" if dtype == "float32" else "tf32")
        for d in HEAD_DIMS:
            if subset and (d != 64 or dtype == "float16"):
                continue
            cls = (dtype, d)
            unit = {f"stride_{t}d": 1 for t in ("q", "k", "v", "o", "do", "dk", "dv", "dq")}
            base = dict(HEAD_DIM=d, **unit)
            ptrs = {n: ptr for n in ("Q", "K", "V", "O", "DO", "DK", "DV", "DQ")}
            ptrs |= {"LSE2": "*fp32", "DELTA": "*fp32"}
            pre = A.PRE_CONFIG
            if not candidates and not A.supports(_torch_dtype(dtype), d):
                torch_path.append(Row("attention", "all", dtype, str(d), "-",
                                      error="no config fits: torch path", selectable=False))
                continue
            jobs.append(Job(Row("attention", "bwd_preprocess", dtype, str(d),
                                f"{pre.block_m} w{pre.num_warps}"),
                            A.__name__, "bwd_preprocess", ptrs, (),
                            {**base, "BLOCK_M": pre.block_m},
                            {"num_warps": pre.num_warps, "num_stages": pre.num_stages}))
            for name, tuned in A.TUNED.items():
                table, cfgs = _configs(tuned, cls, CANDIDATES["attention"][name], subset,
                                       candidates)
                for cfg in cfgs:
                    bm, bn, w, s = cfg
                    jobs.append(Job(Row("attention", name, dtype, str(d), _fmt(cfg),
                                        selectable=cfg in table),
                                    A.__name__, name, ptrs, ("sm_scale",),
                                    {**base, "DOT_PREC": prec, "BLOCK_M": bm, "BLOCK_N": bn},
                                    {"num_warps": w, "num_stages": s},
                                    cost=bm * bn * d / 2 ** 17 * (2 if prec == "ieee" else 1)))
    return jobs, torch_path


def _infonce_jobs(subset: bool, candidates: bool) -> tuple[list[Job], list[Row]]:
    from ssast_fast.ops import infonce as I

    jobs, torch_path = [], []
    ptrs_out = {"ROWMAX": "*fp32", "LOGSUM": "*fp32", "LOSS": "*fp32", "HIT": "*i8", "DP": "*fp32"}
    for dtype in DTYPES:
        ptr, prec = _PTR[dtype], ("ieee" if dtype == "float32" else "tf32")
        for bd in INFONCE_BLOCK_DS:
            if subset and (bd != 256 or dtype != "float32"):
                continue
            cls = (dtype, bd)
            for name, tuned in I.TUNED.items():
                table, cfgs = _configs(tuned, cls, CANDIDATES["infonce"][name], subset,
                                       candidates)
                if not table and not candidates:
                    continue  # BLOCK_Ds beyond the tables: supports() refuses them
                for cfg in cfgs:
                    bm, bn, w, s = cfg
                    for grad in ((None,) if name == "rows" else (True, False)):
                        consts = dict(BLOCK_D=bd, DOT_PREC=prec, BLOCK_M=bm, BLOCK_N=bn,
                                      stride_td=1, stride_pd=1)
                        label = name if grad is None else f"cols grad={int(grad)}"
                        if grad is not None:
                            consts["COMPUTE_GRAD"] = grad
                        jobs.append(Job(Row("infonce", label, dtype, str(bd), _fmt(cfg),
                                            selectable=cfg in table),
                                        I.__name__, name, {"T": ptr, "P": ptr, **ptrs_out},
                                        ("inv_n",), consts, {"num_warps": w, "num_stages": s},
                                        cost=(bm + bn) * bd / 2 ** 13))
    for dtype in DTYPES:
        if not subset and not candidates:
            torch_path.append(Row("infonce", "rows+cols", dtype,
                                  f"D > {I.max_d(_torch_dtype(dtype))}", "-",
                                  error="no config fits: torch path", selectable=False))
    return jobs, torch_path


def _torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def _fbank_jobs(subset: bool) -> list[Job]:
    from ssast_fast.features import fbank_triton as ft
    from ssast_fast.features.kaldi import FbankOptions

    users: dict[int, list[str]] = {}
    for name, kwargs in FBANK_SETTINGS.items():
        o = FbankOptions(**kwargs)
        if not ft.supports(o):
            raise SystemExit(f"fbank setting {name}: FFT {o.padded_window_size} not supported")
        users.setdefault(o.padded_window_size, []).append(name)
    jobs = []
    f64 = ("win_ptr", "c1_ptr", "s1_ptr", "twr_ptr", "twi_ptr", "c2_ptr", "s2_ptr", "preemph_ptr")
    ptrs = {"wave_ptr": "*fp32", "len_ptr": "*i32", "nframes_ptr": "*i32", "noise_ptr": "*fp32",
            "power_ptr": "*fp32", "out_ptr": "*fp32"} | {k: "*fp64" for k in f64}
    for n in ft.FFT_SIZES:
        if subset and n != 512:
            continue
        g = ft.spectrum_geometry(n)
        label = f"N={n}" + (f" ({', '.join(users[n])})" if n in users else "")
        jobs.append(Job(Row("fbank", "spectrum", "float32", label,
                            f"BF={g['BF']} w{ft.SPECTRUM_WARPS}"),
                        ft.__name__, "spectrum_kernel", ptrs, ("log_energy_floor",), dict(g),
                        {"num_warps": ft.SPECTRUM_WARPS}, cost=4.0))
    bf, bm, bk = ft.MEL_BLOCK
    jobs.append(Job(Row("fbank", "mel_log", "float32", "all settings",
                        f"{bf}x{bm}x{bk} w{ft.MEL_WARPS} s{ft.MEL_STAGES}"),
                    ft.__name__, "mel_log_kernel",
                    {"power_ptr": "*fp32", "mel_ptr": "*fp32", "nframes_ptr": "*i32",
                     "out_ptr": "*fp32"}, (), dict(BLOCK_F=bf, BLOCK_MEL=bm, BLOCK_K=bk),
                    {"num_warps": ft.MEL_WARPS, "num_stages": ft.MEL_STAGES}))
    return jobs


def build_jobs(subset: bool = False, candidates: bool = False,
               families: tuple[str, ...] = ("attention", "infonce", "fbank")
               ) -> tuple[list[Job], list[Row]]:
    """The compile jobs, and the rows for classes that run on the torch path."""
    a_jobs, a_torch = _attention_jobs(subset, candidates)
    i_jobs, i_torch = _infonce_jobs(subset, candidates)
    jobs = a_jobs + i_jobs + _fbank_jobs(subset)
    return ([j for j in jobs if j.row.family in families],
            [r for r in a_torch + i_torch if r.family in families])


# ---- compiling one job ------------------------------------------------------------------------

_PTXAS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
}


def _kernel(job: Job):
    mod = importlib.import_module(job.module)
    kernels = getattr(mod, "KERNELS", {})
    return kernels[job.kernel] if job.kernel in kernels else getattr(mod, job.kernel)


def _source(job: Job):
    """The ``ASTSource`` of a job: every argument typed as the JIT types it at launch."""
    from triton.compiler import ASTSource

    fn = _kernel(job)
    constexpr_args = {p.name for p in fn.params if p.is_constexpr}
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in job.consts or name in constexpr_args:
            if name not in job.consts:
                raise KeyError(f"{job.kernel}: no value for constexpr {name}")
            sig[name] = "constexpr"
        elif name in job.ptrs:
            sig[name] = job.ptrs[name]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in job.floats:
            sig[name] = "fp32"
        elif name.startswith("stride_"):
            sig[name] = "i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:  # a size or flag: do_not_specialize in the kernel, a plain i32
            sig[name] = "i32"
    consts = {k: v for k, v in job.consts.items() if k in sig}  # unit strides it does not have
    return ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs)


def compile_job(job: Job, arch: int = 90) -> Row:
    """Compile one job for ``sm_<arch>`` and fill in its row (errors are recorded, not raised)."""
    import triton
    from triton.backends.compiler import GPUTarget

    row = dataclasses.replace(job.row)
    t0 = time.perf_counter()
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # triton prints the ptxas -v log (knob below)
            compiled = triton.compile(_source(job), target=GPUTarget("cuda", arch, 32),
                                      options=dict(job.options))
        row.shared = int(compiled.metadata.shared)
        text = log.getvalue()
        for key, pattern in _PTXAS.items():
            found = [int(x) for x in pattern.findall(text)]
            if not found:
                raise RuntimeError(f"no '{pattern.pattern}' in the ptxas log:\n{text[-2000:]}")
            setattr(row, key, max(found))
    except Exception as e:  # noqa: BLE001 - a failing compile is a report row
        first = (str(e).strip().splitlines() or [""])[0]
        row.error = f"{type(e).__name__}: {first[:300]}"
    row.seconds = time.perf_counter() - t0
    return row


def _worker_init(cache_root: str) -> None:
    """Each worker compiles afresh (a private cache: ptxas always runs, so its log is there)."""
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(dir=cache_root)
    try:
        import triton

        triton.knobs.nvidia.dump_ptxas_log = True
        triton.knobs.cache.dir = os.environ["TRITON_CACHE_DIR"]
    except (ImportError, AttributeError):
        pass


def _compile_star(args: tuple[Job, int]) -> Row:
    return compile_job(*args)


# ---- production launches specialize as the report compiles ---------------------------------


def _launch_scenarios():
    """Run every launcher once per config class on CPU tensors (the kernels' ``run`` is
    intercepted, nothing executes), with the layouts the model passes and a few others."""
    import torch

    from ssast_fast.features import fbank_triton as ft
    from ssast_fast.features.kaldi import FbankOptions
    from ssast_fast.ops import attention as A
    from ssast_fast.ops import infonce as I

    for dtype, d in sorted({c for t in A.TUNED.values() for c in t.configs}):
        if not A.supports(_torch_dtype(dtype), d):
            continue
        shape = (2, 37, 3, 3, d)  # the model's packed qkv [B, N, 3, H, D]
        qkv = torch.zeros(shape, dtype=_torch_dtype(dtype))
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out, lse2 = A._triton_forward(q, k, v, 0.125)
        do = torch.zeros(1, 1, 1, 1, dtype=torch.float32).expand(q.shape)  # a stride-0 grad
        A._triton_backward(do, q, k, v, out, lse2, 0.125)
        odd = torch.zeros(qkv.numel() + 1, dtype=qkv.dtype)[1:].view(shape)  # misaligned
        A._triton_forward(*odd.permute(2, 0, 3, 1, 4).unbind(0), 0.125)
    for dtype, bd in sorted({c for t in I.TUNED.values() for c in t.configs}):
        for d in sorted({bd, max(1, bd - 5), bd // 2 + 3}):
            if I.supports(_torch_dtype(dtype), d) and I.block_d(d) == bd:
                t = torch.zeros(3, 19, d, dtype=_torch_dtype(dtype))
                for grad in (True, False):
                    I._launch(t, t[:, :, :], grad)
    for kwargs in FBANK_SETTINGS.values():
        o = FbankOptions(**kwargs)
        waves = torch.zeros(2, int(o.sample_frequency * 0.05) + 3)
        noise = torch.zeros(2, o.num_frames(waves.shape[1]), o.window_size) if o.dither else None
        ft.fbank_triton(waves[:, 1:], torch.tensor([waves.shape[1] - 1, o.window_size]), o, noise)


def check_launches() -> tuple[int, list[str]]:
    """Check that every kernel launch the ops make specializes exactly as a report job compiles
    it (signature, divisibility attributes, constexprs, warps and stages), using Triton's own
    argument binder for an sm_90 target. Returns (launches checked, mismatches)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    from ssast_fast.ops._triton_common import pinned_configs

    jobs, _ = build_jobs()
    fns = {}
    for job in jobs:
        fns.setdefault(job.kernel, _kernel(job))
    backend = make_backend(GPUTarget("cuda", 90, 32))
    captured = []
    for name, fn in fns.items():
        fn.run = (lambda name: lambda *a, grid, warmup, **kw: captured.append((name, a, kw)))(name)
    try:
        with pinned_configs():
            _launch_scenarios()
    finally:
        for fn in fns.values():
            del fn.run
    problems = []
    for name, args, kwargs in captured:
        fn = fns[name]
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        bound, spec, opts = binder(*args, **kwargs)
        options, sig, consts, attrs = fn._pack_args(backend, kwargs, bound, spec, opts)
        by_name = {fn.arg_names[k[0]]: v for k, v in consts.items()}
        match = [j for j in jobs if j.kernel == name and j.options.get("num_warps") ==
                 options.num_warps and j.options.get("num_stages", options.num_stages) ==
                 options.num_stages and {k: v for k, v in j.consts.items()
                                         if k in fn.arg_names} == by_name]
        if not match:
            problems.append(f"{name}: launch with {by_name}, warps {options.num_warps}, "
                            f"stages {options.num_stages} has no report job")
            continue
        theirs = {k: v for k, v in attrs.items() if v}
        srcs = [_source(j) for j in match]
        if not any(dict(src.signature) == dict(sig)
                   and {k: v for k, v in src.attrs.items() if v} == theirs for src in srcs):
            problems.append(f"{name}: launch signature {sig} / attributes {theirs} differ from "
                            f"the report's ({srcs[0].signature} / {srcs[0].attrs})")
    del triton
    return len(captured), problems


# ---- the report -------------------------------------------------------------------------------


def run_jobs(jobs: list[Job], n_jobs: int, arch: int = 90) -> list[Row]:
    """Compile ``jobs`` in ``n_jobs`` processes (most expensive first); rows in job order."""
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost)
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    rows: list[Optional[Row]] = [None] * len(jobs)
    with tempfile.TemporaryDirectory(prefix="ssast_compile_report_") as cache_root, \
            cf.ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx, initializer=_worker_init,
                                   initargs=(cache_root,)) as pool:
        for i, row in zip(order, pool.map(_compile_star, [(jobs[i], arch) for i in order])):
            rows[i] = row
    return rows  # type: ignore[return-value]


def format_rows(rows: list[Row]) -> str:
    head = (f"{'family':9s} {'kernel':15s} {'dtype':8s} {'dim':28s} {'config':14s} "
            f"{'shared':>7s} {'regs':>4s} {'spill st/ld':>11s} {'stack':>5s} {'s':>5s}  status")
    out = [head, "-" * len(head)]
    for r in rows:
        if r.error and r.shared is None:
            listed = r.selectable or r.config == "-"
            status = r.error if listed else "fails (not listed): " + r.error
        elif r.ok:
            status = "ok" if r.selectable else "ok (not listed)"
        else:
            why = []
            if r.shared is not None and r.shared > SHARED_LIMIT:
                why.append(f"shared > {SHARED_LIMIT}")
            if r.spill_stores or r.spill_loads:
                why.append("spills")
            status = ("FAIL: " if r.selectable else "fails (not listed): ") + ", ".join(why)
        spill = ("-" if r.spill_stores is None else f"{r.spill_stores}/{r.spill_loads}")
        out.append(f"{r.family:9s} {r.kernel:15s} {r.dtype:8s} {r.dim:28s} {r.config:14s} "
                   f"{'-' if r.shared is None else r.shared:>7} "
                   f"{'-' if r.registers is None else r.registers:>4} {spill:>11s} "
                   f"{'-' if r.stack is None else r.stack:>5} {r.seconds:5.1f}  {status}")
    return "\n".join(out)


def failures(rows: list[Row]) -> list[Row]:
    """Selectable configs that do not fit (or did not compile), and launch mismatches."""
    return [r for r in rows if r.selectable and not r.ok]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subset", action="store_true",
                    help="a few kernels (the production defaults), for quick checks")
    ap.add_argument("--candidates", action="store_true",
                    help="also compile the candidate configs the tables were chosen from")
    ap.add_argument("--json", type=Path, help="write the rows and a summary here")
    ap.add_argument("--jobs", type=int, default=max(1, min(os.cpu_count() or 1, 8)),
                    help="compile processes (default: the CPU count, at most 8)")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--only", default="attention,infonce,fbank",
                    help="comma-separated kernel families to compile (default: all)")
    args = ap.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)  # before triton and the kernels are imported
    sys.path.insert(0, str(REPO))
    import triton

    t0 = time.perf_counter()
    jobs, torch_path = build_jobs(args.subset, args.candidates, tuple(args.only.split(",")))
    print(f"compile_report: {len(jobs)} kernel configs for sm_{args.arch}, triton "
          f"{triton.__version__}, {args.jobs} processes", flush=True)
    rows = run_jobs(jobs, args.jobs, args.arch) + torch_path
    n_launches, problems = check_launches()
    rows += [Row("launch", "specialization", "-", "-", "-", error=p) for p in problems]
    wall = time.perf_counter() - t0
    print(format_rows(rows))
    print(f"compile_report: {n_launches} kernel launches of the ops specialize as compiled here"
          if not problems else f"compile_report: {len(problems)} launches differ from the report")
    bad = failures(rows)
    summary = {"triton": triton.__version__, "arch": args.arch, "subset": args.subset,
               "candidates": args.candidates, "kernels": len(jobs), "failures": len(bad),
               "launches_checked": n_launches,
               "wall_s": round(wall, 1), "shared_limit": SHARED_LIMIT}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary,
                                         "rows": [r.as_dict() for r in rows]}, indent=1))
    verdict = "OK" if not bad else f"FAIL ({len(bad)} selectable configs or launches)"
    print(f"compile_report: {verdict}: {len(jobs)} kernel configs, triton {triton.__version__}, "
          f"{wall:.0f} s")
    return 0 if not bad else 1


#: Sources whose content decides the report (a cached report is reused only if none changed).
SOURCES = ("benchmarks/compile_report.py", "ssast_fast/ops/_triton_common.py",
           "ssast_fast/ops/attention.py", "ssast_fast/ops/infonce.py",
           "ssast_fast/features/fbank_triton.py", "ssast_fast/features/kaldi.py")
CACHE_DIR = REPO / "build" / "compile_report"


def _cache_file(python: str, subset: bool, arch: int) -> Path:
    """build/compile_report/<hash of the sources, the interpreter and its triton>.json."""
    h = hashlib.sha256(f"{python}|{subset}|{arch}".encode())
    for name in SOURCES:
        h.update((REPO / name).read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    version = subprocess.run([python, "-c", "import triton; print(triton.__version__)"],
                             capture_output=True, text=True, env=env).stdout.strip()
    h.update(version.encode())
    return CACHE_DIR / f"{'subset' if subset else 'full'}-{version}-{h.hexdigest()[:16]}.json"


def run_report(subset: bool = False, jobs: Optional[int] = None, arch: int = 90,
               python: Optional[str] = None, use_cache: bool = True,
               timeout: float = 900) -> list[dict]:
    """Run the report in a clean subprocess (no ``TRITON_INTERPRET``) and return its rows as
    dicts (``family, kernel, dtype, dim, config, shared, registers, spill_stores, spill_loads,
    stack, seconds, error, selectable, ok``). A row with ``ok`` false and ``selectable`` true is
    a failure (family ``launch``: a kernel launch that specializes differently from the report);
    rows with ``config == "-"`` and ``selectable`` false name classes on the torch path.

    Each result is saved under build/compile_report/, keyed by the kernel sources, the Python
    and its triton version; with ``use_cache`` a saved result for the same key is returned
    without compiling. ``python``: the interpreter to run it with (default: this one).
    Raises ``RuntimeError`` when the report itself could not run (no triton, a crash).
    """
    python = python or sys.executable
    cached = _cache_file(python, subset, arch)
    if use_cache and cached.exists():
        return json.loads(cached.read_text())["rows"]
    cmd = [python, str(Path(__file__).resolve()), "--json", str(cached), "--arch", str(arch)]
    if subset:
        cmd.append("--subset")
    if jobs:
        cmd += ["--jobs", str(jobs)]
    cached.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                         cwd=REPO)
    if not cached.exists():
        raise RuntimeError(f"compile_report failed (exit {res.returncode}):\n"
                           f"{(res.stdout + res.stderr)[-3000:]}")
    return json.loads(cached.read_text())["rows"]


if __name__ == "__main__":
    sys.exit(main())
