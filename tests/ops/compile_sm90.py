"""Compile the attention Triton kernels for a CUDA target without a GPU (ptxas ships with triton).

Run with TRITON_INTERPRET unset (the interpreter replaces @triton.jit functions):
    python tests/ops/compile_sm90.py [--arch 90] [--all-configs]
Prints one line per compiled kernel and exits non-zero on the first failure.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from triton_compile import INTERPRETER_MESSAGE, compile_kernel, report_compiled  # noqa: E402

_PTR = {"float16": "*fp16", "bfloat16": "*bf16", "float32": "*fp32"}
_STRIDES = ("b", "h", "n", "d")


def _strides(prefix: str) -> dict:
    # The last-dim stride is 1 in practice; Triton's JIT specializes integer 1s as constants,
    # so compile that variant.
    return {f"stride_{prefix}{s}": "i32" for s in _STRIDES[:3]} | {f"stride_{prefix}d": "constexpr"}


def _kernel_specs(dtype: str, head_dim: int, blocks: dict) -> list:
    """(name, signature, constexprs) for every kernel at one dtype / head dim / block config."""
    p = _PTR[dtype]
    prec = "ieee" if dtype == "float32" else "tf32"
    d1 = lambda *names: {f"stride_{n}d": 1 for n in names}  # noqa: E731
    common = {"H": "i32", "N_CTX": "i32", "HEAD_DIM": "constexpr", "BLOCK_M": "constexpr"}
    specs = []
    sig = {"Q": p, "K": p, "V": p, "O": p, "LSE2": "*fp32", "sm_scale": "fp32"}
    for t in ("q", "k", "v", "o"):
        sig |= _strides(t)
    sig |= common | {"BLOCK_N": "constexpr", "DOT_PREC": "constexpr"}
    specs.append(("fwd", sig, {"HEAD_DIM": head_dim, "DOT_PREC": prec, **blocks["fwd"],
                               **d1("q", "k", "v", "o")}))
    sig = {"O": p, "DO": p, "DELTA": "*fp32"} | _strides("o") | _strides("do") | common
    specs.append(("bwd_preprocess", sig, {"HEAD_DIM": head_dim, "BLOCK_M": blocks["pre"],
                                          **d1("o", "do")}))
    sig = {"Q": p, "K": p, "V": p, "DO": p, "DK": p, "DV": p, "LSE2": "*fp32",
           "DELTA": "*fp32", "sm_scale": "fp32"}
    for t in ("q", "k", "v", "do", "dk", "dv"):
        sig |= _strides(t)
    sig |= common | {"BLOCK_N": "constexpr", "DOT_PREC": "constexpr"}
    specs.append(("bwd_dkdv", sig, {"HEAD_DIM": head_dim, "DOT_PREC": prec, **blocks["dkdv"],
                                    **d1("q", "k", "v", "do", "dk", "dv")}))
    sig = {"Q": p, "K": p, "V": p, "DO": p, "DQ": p, "LSE2": "*fp32", "DELTA": "*fp32",
           "sm_scale": "fp32"}
    for t in ("q", "k", "v", "do", "dq"):
        sig |= _strides(t)
    sig |= common | {"BLOCK_N": "constexpr", "DOT_PREC": "constexpr"}
    specs.append(("bwd_dq", sig, {"HEAD_DIM": head_dim, "DOT_PREC": prec, **blocks["dq"],
                                  **d1("q", "k", "v", "do", "dq")}))
    return specs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--dtypes", default="float16,bfloat16,float32")
    ap.add_argument("--head-dims", default="64")
    ap.add_argument("--all-configs", action="store_true",
                    help="compile every autotune config (default: the first of each list)")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print(INTERPRETER_MESSAGE, file=sys.stderr)
        return 2

    from ssast_fast.ops import attention as A
    from ssast_fast.ops._triton_common import prune_by_precision

    n_cfg = None if args.all_configs else 1
    n_ok = 0
    for dtype in args.dtypes.split(","):
        # The configs the autotuner would try for this precision (first one unless --all-configs).
        prec = {"DOT_PREC": "ieee" if dtype == "float32" else "tf32"}
        cfg_lists = {name: prune_by_precision(cfgs, {}, **prec)[:n_cfg] for name, cfgs in
                     (("fwd", A._FWD_CONFIGS), ("bwd_dkdv", A._DKDV_CONFIGS),
                      ("bwd_dq", A._DQ_CONFIGS))}
        for head_dim in (int(x) for x in args.head_dims.split(",")):
            for i in range(max(len(c) for c in cfg_lists.values())):
                pick = {k: c[min(i, len(c) - 1)] for k, c in cfg_lists.items()}
                blocks = {"fwd": pick["fwd"].kwargs, "dkdv": pick["bwd_dkdv"].kwargs,
                          "dq": pick["bwd_dq"].kwargs, "pre": A._PRE_BLOCK_M}
                for name, sig, consts in _kernel_specs(dtype, head_dim, blocks):
                    if i > 0 and name == "bwd_preprocess":
                        continue
                    cfg = pick.get(name)
                    opts = ({"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
                            if cfg is not None else {"num_warps": 4})
                    t0 = time.perf_counter()
                    # The JIT's launch-time hints for the model's tensors: batch/head/row
                    # strides are multiples of 16 (D in {32, 64, 128}; qkv views have 3*H*D).
                    compiled = compile_kernel(A.KERNELS[name], sig, consts, args.arch, opts)
                    cubin = compiled.asm["cubin"]
                    n_regs = getattr(compiled, "n_regs", None)
                    print(f"sm_{args.arch} {name:15s} {dtype:9s} D={head_dim:<3d} "
                          f"{ {k: v for k, v in consts.items() if k.startswith('BLOCK')} } "
                          f"{opts} cubin={len(cubin)}B shared={compiled.metadata.shared}B "
                          f"({time.perf_counter() - t0:.1f}s)", flush=True)
                    n_ok += 1
    return report_compiled(n_ok, args.arch)


if __name__ == "__main__":
    sys.exit(main())
