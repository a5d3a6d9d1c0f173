"""Times the official SSAST joint pretraining step, for bench_pretrain_step.py --official.

Runs in the official code's own environment (its ``src/models`` folder on ``--code``, timm 0.4.5,
matplotlib; no ssast_fast), never in this repository's venv. It builds the official ``ASTModel``
(tiny, 16x16 patches, pretraining stage) and an Adam optimizer configured as the official
``traintest_mask.py`` configures it, then answers a line protocol on stdin/stdout:

    -> "ready"                      after set-up
    <- "step"   -> "<wall s> <cpu s>"  one step (wall clock; CPU time of this process): mpc pass,
                                    mpg pass (each with its own mask draw),
                                    loss = nce + 10 * mse, zero_grad, backward, Adam step
    <- "quit"

The official constructor prints; those lines go to stderr so stdout carries only the protocol.
"""
from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", required=True, help="folder holding the official ast_models.py")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=1024)
    ap.add_argument("--mask", type=int, default=400)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, args.code)
    with contextlib.redirect_stdout(sys.stderr):
        import ast_models

        torch.manual_seed(0)
        random.seed(0)
        model = ast_models.ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128,
                                    input_tdim=args.frames, model_size="tiny", pretrain_stage=True)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4, weight_decay=5e-7,
                           betas=(0.95, 0.999))
    x = torch.randn(args.batch, args.frames, 128)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t0, c0 = time.perf_counter(), time.process_time()
        _, nce = model(x, "pretrain_mpc", mask_patch=args.mask, cluster=True)
        mse = model(x, "pretrain_mpg", mask_patch=args.mask, cluster=True)
        loss = nce + 10 * mse
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"{time.perf_counter() - t0:.6f} {time.process_time() - c0:.6f}", flush=True)


if __name__ == "__main__":
    main()
