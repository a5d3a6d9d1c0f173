"""``ssast-fast smoke``: a tiny end-to-end check (one joint pretraining step, one fine-tuning forward)."""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import torch

from ssast_fast import _ext
from ssast_fast.checkpoint import save_reference
from ssast_fast.model import ASTModel


def add_command(sub) -> None:
    s = sub.add_parser("smoke", help="tiny model: one joint pretraining step and one fine-tuning forward")
    s.add_argument("--batch", type=int, default=4, help="clips per batch")
    s.add_argument("--frames", type=int, default=256, help="spectrogram frames per clip (multiple of 16)")
    s.add_argument("--mask-patch", type=int, default=100, help="masked patches per clip")
    s.add_argument("--seed", type=int, default=0, help="seed for Python's random and torch")
    s.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    shape = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=args.frames)
    model = ASTModel(model_size="tiny", **shape)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-7, betas=(0.95, 0.999))
    x = torch.randn(args.batch, args.frames, 128)
    t0 = time.perf_counter()
    acc, nce, mse = model.pretrain_joint(x, mask_patch=args.mask_patch)
    loss = nce + 10 * mse
    loss.backward()
    opt.step()
    t1 = time.perf_counter()
    print(f"extension: {'compiled' if _ext.available() else 'pure Python'}")
    print(f"pretrain joint step (tiny, B={args.batch}, {args.frames} frames, mask {args.mask_patch}): "
          f"acc={acc.item():.4f} nce={nce.item():.4f} mse={mse.item():.4f} loss={loss.item():.4f} "
          f"({t1 - t0:.2f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "pretrained.pth")  # reference (DataParallel) format
        save_reference(model, ckpt)
        ft = ASTModel(label_dim=10, fshape=16, tshape=16, fstride=10, tstride=10, input_fdim=128,
                      input_tdim=args.frames // 2, model_size="tiny", pretrain_stage=False,
                      load_pretrained_mdl_path=ckpt)
    with torch.no_grad():
        logits = ft(torch.randn(args.batch, args.frames // 2, 128), "ft_avgtok")
    print(f"fine-tune forward (stride 10, {args.frames // 2} frames): logits {tuple(logits.shape)}, "
          f"mean={logits.mean().item():.4f}")
    return 0
