"""Every GPU parity check and benchmark in one call, printed as tables.

    python benchmarks/gpu_suite.py                 # all sections
    python benchmarks/gpu_suite.py --list          # section names
    python benchmarks/gpu_suite.py --only attention/parity --quick
    python benchmarks/gpu_suite.py --json gpu_suite.json
    python benchmarks/gpu_suite.py --dry-run       # no GPU: the plumbing on CPU, tiny sizes,
                                                   # Triton in its interpreter (no timings)

Without a CUDA device it prints a message and exits 0. Exit status 1 when a check failed.
Do not set TRITON_INTERPRET (the kernels must be compiled for the GPU).

Adding a section: write a function taking the parsed `args` and returning a `Table`, and
register it with `@section("<op>/<what>", kind="check" | "bench")`. Checks count failing rows
in `Table.failures`; benchmarks just report. Sections run in registration order, and one
section raising does not stop the others. Use `DEVICE`, `sync()` and `time_ms()` rather than
hard-coding "cuda", and shrink the work when `args.dry_run` is set, so `--dry-run` keeps
exercising the section on a machine without a GPU.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the ssast_fast package (repo root)
sys.path.insert(0, str(HERE))  # bench_<op>.py helpers

import torch  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Framework
# ---------------------------------------------------------------------------------------------


@dataclass
class Table:
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    failures: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Section:
    name: str
    kind: str  # "check" | "bench"
    fn: Callable[[argparse.Namespace], Table]


SECTIONS: list[Section] = []
DEVICE = "cuda"  # "cpu" under --dry-run


def section(name: str, kind: str):
    assert kind in ("check", "bench"), kind

    def register(fn):
        SECTIONS.append(Section(name, kind, fn))
        return fn

    return register


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], warmup: int = 3, reps: int = 20,
            setup: Callable[[], object] | None = None) -> float:
    """Median time of fn() in ms after warm-up: CUDA events on the GPU (setup() runs outside
    the timed region), perf_counter on the CPU (dry runs)."""
    import time

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
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
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


def _fmt(x) -> str:
    if isinstance(x, float):
        if x == 0.0:
            return "0"
        if abs(x) >= 1e4 or abs(x) < 1e-2:
            return f"{x:.2e}"
        return f"{x:.3f}"
    return str(x)


def print_table(title: str, table: Table) -> None:
    cells = [table.columns] + [[_fmt(c) for c in row] for row in table.rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(table.columns))]
    line = "  ".join("-" * w for w in widths)
    print(f"\n== {title} ==")
    print("  ".join(c.ljust(w) for c, w in zip(table.columns, widths)))
    print(line)
    for row in cells[1:]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    for note in table.notes:
        print(f"  note: {note}")
    if table.failures:
        print(f"  FAILED rows: {table.failures}")


def environment() -> dict:
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = p.name
        env["capability"] = f"{p.major}.{p.minor}"
        env["gpu_memory_GiB"] = round(p.total_memory / 2**30, 1)
    return env


# ---------------------------------------------------------------------------------------------
# Attention (ssast_fast.ops.attention)
# ---------------------------------------------------------------------------------------------

_ATTN_FLOOR = {torch.float32: 1e-6, torch.float16: 1e-5, torch.bfloat16: 1e-4}


def _attn_fwd_bwd(backend, dtype, q, k, v, do):
    from ssast_fast.ops.attention import attention

    leaves = [t.detach().clone().to(dtype).requires_grad_() for t in (q, k, v)]
    out = attention(*leaves, backend=backend)
    out.backward(do.to(dtype))
    return [t.detach().double() for t in (out, *(x.grad for x in leaves))]


@section("attention/parity", kind="check")
def attention_parity(args) -> Table:
    """Triton kernel vs float64 eager, forward and the three gradients, at the model's token
    counts: pass when its max error <= 2x that of eager attention in the same dtype (+ floor)."""
    from ssast_fast.ops.attention import supports

    table = Table(["dtype", "N", "D", "tensor", "err_triton", "err_eager", "err_sdpa",
                   "triton/eager", "ok"])
    cases = [(dt, n, 64) for dt in (torch.float16, torch.bfloat16, torch.float32)
             for n in (130, 514, 602, 1214)]
    cases += [(torch.bfloat16, 514, 32), (torch.bfloat16, 514, 128), (torch.float16, 602, 128),
              (torch.float32, 514, 32)]
    cases = [c for c in cases if supports(c[0], c[2])]  # others run on SDPA
    B, H = 2, 4
    if args.quick:
        cases = [c for c in cases if c[1] in (130, 602)]
    if args.dry_run:  # interpreter: no bf16, tiny sizes
        cases, B, H = [(torch.float32, 33, 32), (torch.float16, 70, 64)], 1, 2
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 eager must be true fp32
    try:
        for dtype, N, D in cases:
            g = torch.Generator(device=DEVICE).manual_seed(N * 1000 + D)
            q, k, v, do = (torch.randn(B, H, N, D, generator=g, device=DEVICE,
                                       dtype=torch.float64) for _ in range(4))
            ref = _attn_fwd_bwd("eager", torch.float64, q, k, v, do)
            errs = {}
            for backend in ("triton", "eager", "sdpa"):
                got = _attn_fwd_bwd(backend, dtype, q, k, v, do)
                errs[backend] = [(a - r).abs().max().item() for a, r in zip(got, ref)]
            for i, name in enumerate(("out", "dq", "dk", "dv")):
                et, ee, es = errs["triton"][i], errs["eager"][i], errs["sdpa"][i]
                ok = et <= 2 * ee + _ATTN_FLOOR[dtype]
                table.failures += not ok
                table.rows.append([str(dtype).replace("torch.", ""), N, D, name, et, ee, es,
                                   et / ee if ee else float("inf"), "ok" if ok else "FAIL"])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    table.notes.append(f"B={B}, H={H}; errors are max |x - x_fp64| over the tensor")
    return table


@section("attention/bench", kind="bench")
def attention_bench(args) -> Table:
    """Forward and forward+backward time, B=24, H=12, D=64, for the Triton kernel, each SDPA
    backend and eager; TFLOP/s with fwd = 4*B*H*N^2*D flops and bwd = 2.5x that."""
    from bench_attention import BACKENDS, attn_flops, check_runs, make_inputs, make_step

    from ssast_fast.ops import attention as A

    B, H, D = 24, 12, 64
    Ns = (514,) if args.quick else (514, 1214)
    dtypes = (torch.bfloat16,) if args.quick else (torch.bfloat16, torch.float16)
    if args.dry_run:  # float32 runs on the Triton kernel at D = 32 only
        B, H, D, Ns, dtypes = 1, 2, 32, (40,), (torch.float32,)
    table = Table(["dtype", "N", "backend", "fwd_ms", "fwd_TFLOP/s", "fwd+bwd_ms",
                   "fwd+bwd_TFLOP/s", "vs_best_sdpa"])
    for dtype in dtypes:
        for N in Ns:
            results = {}
            for name in BACKENDS:
                q, k, v, do = make_inputs(B, H, N, D, dtype, DEVICE)
                fwdbwd = make_step(name, q, k, v, do, bwd=True)
                why = check_runs(fwdbwd)  # also triggers Triton autotuning
                if why is not None:
                    results[name] = why
                    continue
                fwd = make_step(name, q, k, v, do, bwd=False)

                def fwd_nograd(fwd=fwd):
                    with torch.no_grad():
                        fwd()

                def zero_grads(ts=(q, k, v)):
                    for t in ts:
                        t.grad = None

                t_f = time_ms(fwd_nograd, reps=args.reps)
                t_fb = time_ms(fwdbwd, reps=args.reps, setup=zero_grads)
                results[name] = (t_f, t_fb)
                del q, k, v, do
                if DEVICE == "cuda":
                    torch.cuda.empty_cache()
            sdpa = {n: r for n, r in results.items() if n.startswith("sdpa")
                    and not isinstance(r, str)}
            best = min(r[1] for r in sdpa.values()) if sdpa else None
            for name, res in results.items():
                if isinstance(res, str):  # could not run: why
                    table.rows.append([str(dtype).replace("torch.", ""), N, name, "-", "-", "-",
                                       "-", f"n/a: {res[:60]}"])
                    continue
                t_f, t_fb = res
                table.rows.append([
                    str(dtype).replace("torch.", ""), N, name,
                    t_f, attn_flops(B, H, N, D, bwd=False) / t_f / 1e9,
                    t_fb, attn_flops(B, H, N, D, bwd=True) / t_fb / 1e9,
                    f"{best / t_fb:.2f}x" if best else "-"])
            if not isinstance(results.get("triton", ""), str):
                picks = {k: getattr(t._tuner, "best_config", None) for k, t in A.TUNED.items()}
                table.notes.append(f"{dtype} N={N} autotuned: "
                                   + "; ".join(f"{k}: {v}" for k, v in picks.items()))
    table.notes.append(f"B={B}, H={H}, D={D}; median of {args.reps} runs ({DEVICE} timer); "
                       "vs_best_sdpa = best SDPA fwd+bwd time / this fwd+bwd time "
                       "(target for triton: >= 1.0x)")
    return table


# ---------------------------------------------------------------------------------------------
# InfoNCE (ssast_fast.ops.infonce)
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


@section("infonce/parity", kind="check")
def infonce_parity(args) -> Table:
    """Triton InfoNCE at B=24, M=400, D=256 vs float64 and torch: nce and d pred within 2x the
    error of torch in the same dtype (+ floor); column hits equal to torch's except where the
    float64 column maximum is a near-tie (top-2 within 1e-4) or at the subnormal border."""
    from ssast_fast.ops import infonce as I

    table = Table(["dtype", "scale", "nce_err_triton", "nce_err_torch", "grad_err_triton",
                   "grad_err_torch", "acc", "hit_flips", "unexplained", "ok"])
    B, M, D = (2, 40, 32) if args.dry_run else (24, 400, 256)
    dtypes = (torch.float32, torch.float16) if args.dry_run else (
        torch.float32, torch.bfloat16, torch.float16)
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 torch must be true fp32
    try:
        for dtype in dtypes:
            for scale in (1.0, 30.0):
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
                table.failures += not ok
                table.rows.append([str(dtype).replace("torch.", ""), scale, *e_n, *e_g,
                                   hits.float().mean().item(), int(flips.sum()), unexplained,
                                   "ok" if ok else "FAIL"])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    table.notes.append(f"B={B}, M={M}, D={D}; targets ~ N(0, scale^2), pred ~ N(0, 1/D); "
                       "nce_err relative, grad_err max |d pred - fp64|; hit_flips vs torch")
    return table


@section("infonce/bench", kind="bench")
def infonce_bench(args) -> Table:
    """InfoNCE forward + backward at B=24, M=400, D=256: the loss alone (torch batched vs
    Triton) and heads + loss from the encoder output, C=768 (per-sample loops vs batched torch
    vs batched with the Triton op)."""
    from bench_infonce import CLS, make_inputs, make_step, zero_grads

    from ssast_fast.model.heads import gather_rows
    from ssast_fast.ops.infonce import infonce

    B, M, P, C, D = (2, 40, 64, 64, 32) if args.dry_run else (24, 400, 512, 768, 256)
    dtypes = (torch.float32,) if args.dry_run else (torch.float32, torch.bfloat16)
    table = Table(["dtype", "what", "variant", "fwd+bwd_ms", "vs_torch_batched"])
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
            table.rows.append([str(dtype).replace("torch.", ""), what, variant, ms,
                               f"{times[(what, 'batched')] / ms:.2f}x"])
        del h, patches, cpred, pred, targets
    table.notes.append(f"B={B}, M={M} of P={P} patches, C={C}, D={D}; median of {args.reps} "
                       f"runs ({DEVICE} timer); vs_torch_batched = batched time / this time")
    return table


# ---------------------------------------------------------------------------------------------
# Model (ssast_fast.ASTModel): golden parity on the device, masks, and the joint pretraining step
# ---------------------------------------------------------------------------------------------

_PEAK_TFLOPS = {"H100": {"bf16": 989.4, "fp32": 66.9}, "H200": {"bf16": 989.4, "fp32": 66.9}}


@section("model/golden", kind="check")
def model_golden(args) -> Table:
    """Every golden pretraining/fine-tuning case on the device, fp32 (TF32 off), per attention
    and heads backend: rel-L2 of the loss / logits against the reference (limit 1e-5)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    import random
    import tempfile

    from golden import model_manifest, rel_l2
    from model.test_golden_model import finetune_model, npz, pretrain_model

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    table = Table(["case", "task", "attn", "heads", "rel_err", "acc_flips"])
    cases = model_manifest()["cases"]
    combos = [("sdpa", "torch"), ("eager", "torch"), ("triton", "triton")]
    if args.dry_run:
        cases = {k: v for k, v in cases.items() if k in ("pt_patch_f64_t128", "ft_patch_f64_interp_t256")}
        combos = combos[:1]
    for cid, case in cases.items():
        z = npz(cid)
        x = torch.from_numpy(z["x"]).to(DEVICE)
        for task, meta in case["tasks"].items():
            for attn, heads in combos:
                flips = ""
                if case["stage"] == "pretrain":
                    model = pretrain_model(cid, attn, heads).to(DEVICE)
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
                    with tempfile.TemporaryDirectory() as tmp:
                        model = finetune_model(cid, attn, Path(tmp)).to(DEVICE)
                    err = rel_l2(model(x, task).detach().cpu(), z[f"{task}.logits"])
                ok = err <= 1e-5 and (flips == "" or flips <= 1)
                table.failures += not ok
                table.rows.append([cid, task, attn, heads, err, flips])
        random.seed(0)
    return table


@section("model/masks", kind="bench")
def model_masks(args) -> Table:
    """Masks for B=24, 512 patches (8 x 64), 400 masked: fast sampler on the device vs the
    exact C++ generator (CPU) vs the pure-Python reference algorithm."""
    import random
    import time

    from ssast_fast import _ext
    from ssast_fast.masking import batch_masks, sample_masks

    table = Table(["masks", "variant", "ms", "vs_python"])
    for cluster in (True, False):
        def cpu_ms(fn, reps=20):
            fn()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) * 1e3 / reps

        random.seed(0)
        with _ext.pure():
            python = cpu_ms(lambda: batch_masks(24, 512, 400, 64, cluster), reps=5)
        times = {"python (reference)": python,
                 "exact C++ (CPU)": cpu_ms(lambda: batch_masks(24, 512, 400, 64, cluster)),
                 f"fast ({DEVICE})": time_ms(lambda: sample_masks(24, 512, 400, 64, cluster, device=DEVICE),
                                            reps=args.reps)}
        for name, ms in times.items():
            table.rows.append(["patch" if cluster else "frame", name, ms, f"{python / ms:.1f}x"])
    return table


@section("model/joint_step", kind="bench")
def model_joint_step(args) -> Table:
    """SSAST joint pretraining step (mpc + mpg, fwd + bwd + Adam): the reference-equivalent
    path (fp32, eager attention, per-sample loops, exact Python masks) vs ssast_fast (bf16
    autocast, fast masks, fused heads, Triton attention, torch.compile); samples/s and MFU."""
    from reference_path import reference_joint_step, train_flops_per_clip

    from ssast_fast import ASTModel
    from ssast_fast.masking import sample_masks

    size, B, frames = ("tiny", 2, 256) if args.dry_run else ("base", 24, 1024)
    shape = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=frames, model_size=size)
    M = 40 if args.dry_run else 400
    x = torch.randn(B, frames, 128, device=DEVICE)
    gpu = torch.cuda.get_device_name(0) if DEVICE == "cuda" else ""
    peak = next((v for k, v in _PEAK_TFLOPS.items() if k in gpu), None)
    table = Table(["variant", "precision", "ms/step", "samples/s", "TFLOP/s", "MFU", "speedup"])

    def run(variant: str) -> tuple[float, str]:
        torch.manual_seed(0)
        ours = variant != "reference"
        model = ASTModel(**shape, attn_backend="triton" if ours else "eager",
                         mask_mode="fast" if ours else "reference",
                         heads_backend="auto" if ours else "torch").to(DEVICE)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=5e-7)
        shared = variant == "ours_shared"
        joint = torch.compile(model.joint_losses) if ours and not args.dry_run else model.joint_losses

        def step():
            opt.zero_grad(set_to_none=True)
            if not ours:
                reference_joint_step(model, x, M)
            else:
                idx = [sample_masks(B, model.num_patches, M, model.t_dim, device=DEVICE) for _ in range(1 if shared else 2)]
                with torch.autocast(DEVICE, dtype=torch.bfloat16):
                    _, nce, mse = joint(x, *idx)
                (nce + 10 * mse).backward()
            opt.step()

        ms = time_ms(step, warmup=3, reps=max(3, args.reps // 4))
        del model, opt
        return ms, "bf16" if ours else "fp32"

    results = {v: run(v) for v in ("reference", "ours", "ours_shared")}
    passes = {"reference": 2, "ours": 2, "ours_shared": 1}
    flops_model = ASTModel(**shape)
    per_clip = train_flops_per_clip(flops_model)
    for v, (ms, prec) in results.items():
        tflops = passes[v] * per_clip * B / (ms / 1e3) / 1e12
        mfu = f"{100 * tflops / peak[prec]:.1f}%" if peak else "n/a"
        table.rows.append([v, prec, ms, B / (ms / 1e3), tflops, mfu, f"{results['reference'][0] / ms:.2f}x"])
    table.notes.append(f"{size}, B={B}, {frames} frames, mask {M}; FLOPs = encoder matmuls, fwd + bwd = 3x "
                       f"forward, per encoder pass ({per_clip / 1e9:.0f} GFLOP per clip per pass); "
                       "ours_shared runs one encoder pass (a documented deviation)")
    return table


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the sections and exit")
    ap.add_argument("--only", action="append", default=[],
                    help="run sections whose name contains this (repeatable)")
    ap.add_argument("--quick", action="store_true", help="fewer cases (smoke run)")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions per benchmark")
    ap.add_argument("--json", type=Path, help="also write every table to this JSON file")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU: run every section on CPU at tiny sizes with Triton's "
                         "interpreter, to check the suite itself (numbers are meaningless)")
    args = ap.parse_args(argv)
    global DEVICE

    if args.list:
        for s in SECTIONS:
            print(f"{s.name:30s} {s.kind:6s} {(s.fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.dry_run:
        DEVICE = "cpu"
        args.reps = min(args.reps, 2)
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

    env = environment()
    print("gpu_suite: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    chosen = [s for s in SECTIONS if not args.only or any(o in s.name for o in args.only)]
    report = {"environment": env, "sections": {}}
    failed = []
    for s in chosen:
        try:
            table = s.fn(args)
        except Exception:  # noqa: BLE001 - report and go on with the other sections
            tb = traceback.format_exc()
            print(f"\n== {s.name} ({s.kind}) ==\n  ERROR\n{tb}")
            report["sections"][s.name] = {"kind": s.kind, "error": tb}
            failed.append(s.name)
            continue
        print_table(f"{s.name} ({s.kind})", table)
        report["sections"][s.name] = {"kind": s.kind, "columns": table.columns,
                                      "rows": table.rows, "failures": table.failures,
                                      "notes": table.notes}
        if table.failures:
            failed.append(s.name)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print("\ngpu_suite: " + (f"FAILED: {', '.join(failed)}" if failed else "all sections passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
