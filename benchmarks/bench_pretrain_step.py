"""Joint pretraining step on CPU, every variant side by side in one interleaved run.

Tiny model, 16x16 patches, B=8, 1024 frames (512 patches), mask 400; one step = mpc + mpg
forward, backward of nce + 10 * mse, Adam step (the official loop's optimizer settings).

    python benchmarks/bench_pretrain_step.py [--rounds 7] [--official "CMD"] [--profile VARIANT]

Variants:
- official: the upstream SSAST code itself (only with --official: CMD starts
  benchmarks/official_step_worker.py in the official code's own environment).
- reference: the reference-equivalent eager path (benchmarks/reference_path.py: per-sample Python
  loops, exact Python masks, dense mask multiply, eager attention, fp32).
- ours: ``pretrain_joint`` with fast masks, batched heads, attention "auto": the reference's two
  masked passes (independent masks) as one encoder call on a [2B] batch.
- ours_shared: one mask and one encoder pass feed both heads (``shared_mask=True``, a deviation).
- *_bf16: under ``torch.autocast("cpu", bfloat16)`` (losses stay fp32): "auto" attention is the
  bf16 brgemm kernel where the CPU has AVX512-BF16 (AMX tiles where present), residual adds and
  LayerNorms run fused. ours_bf16_sdpa forces SDPA to isolate the attention kernel.

Rounds are interleaved (one step of every variant per round, the order rotating), so machine
load hits all variants alike. It prints the CPU model, the kernels each variant ran (custom ops
dispatched in its warm-up step, and the brgemm path), medians and ratios.
``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` (in the environment) keeps oneDNN off AMX: on an AMX
machine that emulates an AVX512-BF16 CPU without AMX, as far as oneDNN's kernels go.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_path import ours_joint_step, reference_joint_step  # noqa: E402

from ssast_fast import ASTModel, _ext  # noqa: E402
from ssast_fast.ops import attention_amx, layer_norm  # noqa: E402

B, FRAMES, MASK = 8, 1024, 400
SHAPE = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=FRAMES, model_size="tiny")
OURS = ("ours", "ours_bf16", "ours_bf16_sdpa", "ours_shared", "ours_bf16_shared")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def cpu_flags() -> str:
    try:
        flags = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return ", ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags)


def adam(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The official traintest_mask.py optimizer (lr is irrelevant to the timing)."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4, weight_decay=5e-7,
                            betas=(0.95, 0.999))


def make_step(variant: str, x: torch.Tensor) -> Callable[[], None]:
    torch.manual_seed(0)
    random.seed(0)
    attn = {"reference": "eager", "ours_bf16_sdpa": "sdpa"}.get(variant, "auto")
    model = ASTModel(**SHAPE, attn_backend=attn, mask_mode="reference" if variant == "reference" else "fast")
    opt = adam(model)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if variant == "reference":
            reference_joint_step(model, x, MASK)
        else:
            ours_joint_step(model, x, MASK, shared_mask=variant.endswith("shared"), bf16="bf16" in variant)
        opt.step()

    return step


class OfficialStep:
    """One official step per call, in a worker process (benchmarks/official_step_worker.py)."""

    def __init__(self, cmd: str):
        self.proc = subprocess.Popen(cmd, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"--official: the worker did not start ({cmd})")

    def __call__(self) -> tuple[float, float]:
        """(wall s, CPU s) of one step."""
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        wall, cpu = self.proc.stdout.readline().split()
        return float(wall), float(cpu)

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class _OpNames(TorchDispatchMode):
    """Records the name of every op dispatched inside it (the backward's too: CPU autograd runs on
    this thread)."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.name())
        return func(*args, **(kwargs or {}))


def kernels_seen(step: Callable[[], None]) -> str:
    """Run one step; the project's custom ops and the SDPA kernels that ran in it."""
    with _OpNames() as rec:
        step()
    ours = sorted(n.split("::", 1)[1] for n in rec.names if n.startswith("ssast_fast::"))
    sdpa = sorted(n.split("::", 1)[1] for n in rec.names if "scaled_dot_product" in n)
    return ", ".join(ours + sdpa) or "torch ops only"


def profile_table(step: Callable[[], None], rows: int = 25) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's; give the official "
                    "worker the same --threads)")
    ap.add_argument("--official", default=None, help="command starting official_step_worker.py (its own venv)")
    ap.add_argument("--variants", default="reference," + ",".join(OURS))
    ap.add_argument("--profile", default=None, help="also print a profile of one step of this variant")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    x = torch.randn(B, FRAMES, 128)
    steps: dict[str, Callable[[], object]] = {}
    official = OfficialStep(args.official) if args.official else None
    if official is not None:
        steps["official"] = official
    for v in args.variants.split(","):
        steps[v] = make_step(v, x)

    print(f"CPU: {cpu_model()} ({cpu_flags()}); {torch.get_num_threads()} threads; torch {torch.__version__}; "
          f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}")
    print(f"extension: {'built' if _ext.available() else 'not available (pure paths)'}; bf16 attention kernel: "
          f"{'available, brgemm on ' + attention_amx.isa() if attention_amx.available() else 'not available'}; "
          f"fused LayerNorm->bf16: {'available' if layer_norm.available() else 'not available'}")
    print(f"step: tiny, B={B}, {FRAMES} frames, mask {MASK}, mpc + mpg fwd + bwd + Adam; {args.rounds} rounds "
          f"interleaved after one warm-up step each; load average before: {load_before[0]:.2f}")
    print("kernels (ops dispatched in the warm-up step):")
    for name, step in steps.items():
        if name == "official":
            step()
            print("  official: the upstream code in its own process (fp32, eager)")
        else:
            print(f"  {name}: {kernels_seen(step)}")

    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name == "official":
                wall, c = steps[name]()
            else:
                t0, c0 = time.perf_counter(), time.process_time()
                steps[name]()
                wall, c = time.perf_counter() - t0, time.process_time() - c0
            times[name].append(wall)
            cpu[name].append(c)
    load_after = os.getloadavg()
    if official is not None:
        official.close()

    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    base = [b for b in ("official", "reference") if b in med]
    print(f"\nload average after: {load_after[0]:.2f} (1 min), {load_after[1]:.2f} (5 min); "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("wall: median seconds per step and speed-up (the measure on an idle machine); CPU: median process CPU "
          "seconds (a check on a loaded one, meaningful with --threads 1)")
    print("| variant | wall median s | wall min s | " + " | ".join(f"wall vs {b}" for b in base) + " | CPU median s | "
          + " | ".join(f"CPU vs {b}" for b in base) + " |")
    print("|---|---|---|" + "---|" * len(base) + "---|" + "---|" * len(base))
    for name in names:
        ratios = " | ".join(f"{med[b] / med[name]:.2f}x" for b in base)
        ratios_cpu = " | ".join(f"{med_cpu[b] / med_cpu[name]:.2f}x" for b in base)
        print(f"| {name} | {med[name]:.3f} | {min(times[name]):.3f} | {ratios} | {med_cpu[name]:.3f} | {ratios_cpu} |")
    if args.profile:
        print(f"\nprofile of one {args.profile} step:\n{profile_table(steps[args.profile])}")


if __name__ == "__main__":
    main()
