"""The kernel backends of a training run: settled before tracing, the same on every rank,
reported once.

``backend="auto"`` resolves each custom GPU kernel (Triton attention, InfoNCE, fbank) through a
self-check and a measured choice (:mod:`ssast_fast.ops.dispatch`) that only run eagerly.
:func:`settle` runs them before ``torch.compile`` and DDP: one eager forward + backward of the
model at the training batch size and one no-grad forward at the validation batch size (CUDA;
on the CPU, where fixed rules apply, one no-grad forward of one clip), plus the frontend on one random clip, all on
random input with every RNG state restored afterwards and the gradients dropped, so training
itself is unchanged. Then rank 0's choices replace every other rank's, and rank 0 prints them.
Choices restored from a checkpoint (:func:`ssast_fast.ops.dispatch.load_state_dict`, done on
resume) are used instead of measuring again.
"""
from __future__ import annotations

import torch
from torch import nn

from ssast_fast.checkpoint import capture_rng_state, restore_rng_state
from ssast_fast.ops import dispatch
from ssast_fast.train.build import autocast, build_frontend
from ssast_fast.train.config import VAL_MASK_PATCH, RunConfig

__all__ = ["record", "settle"]


def _losses(model: nn.Module, x: torch.Tensor, args: RunConfig, mask_patch: int) -> torch.Tensor:
    """The sum of the run's task outputs on x (a scalar to differentiate)."""
    if not model.pretrain_stage:
        return model(x, args.task).float().sum()
    m = max(1, min(mask_patch, model.max_mask_patch(cluster=True)))  # the tasks' default cluster masks
    if args.task == "pretrain_joint":
        outs = model.pretrain_joint(x, mask_patch=m, shared_mask=getattr(args, "shared_mask", False))
    else:
        outs = model(x, args.task, mask_patch=m)
    outs = outs if isinstance(outs, tuple) else (outs,)
    return sum(t.float().sum() for t in outs)


def settle(model: nn.Module, args: RunConfig, info) -> None:
    """Settle every ``auto`` kernel choice of the run on ``info.device`` (module docstring);
    collective in a distributed run: every rank calls it at the same point."""
    dev = info.device
    full = dispatch.kernel_device(dev)  # measured choices depend on the batch size
    rng = capture_rng_state()
    was_training = model.training
    try:
        if not args.fbank_in_workers:
            fe = build_frontend(args, False).to(dev)
            n = int(args.sample_rate * args.target_length / 100)  # ~ the clip length at 10 ms frames
            with torch.no_grad():
                fe(torch.randn(1, n, device=dev) * 0.1, torch.tensor([n], device=dev))
        shape = (args.target_length, args.num_mel_bins)
        model.train()
        with torch.set_grad_enabled(full), autocast(args, dev):
            loss = _losses(model, torch.randn(args.batch_size if full else 1, *shape, device=dev),
                           args, getattr(args, "mask_patch", VAL_MASK_PATCH))
        if full:
            loss.backward()
            model.eval()
            with torch.no_grad(), autocast(args, dev):
                _losses(model, torch.randn(2 * args.batch_size, *shape, device=dev), args,
                        VAL_MASK_PATCH)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        restore_rng_state(rng)
    dispatch.broadcast_from_rank0()
    if info.is_main:
        print("kernel backends (backend='auto'; also in summary.json):\n  "
              + "\n  ".join(dispatch.format_record()), flush=True)


def record() -> list[dict]:
    """Every backend decision of this process, for summary.json."""
    return dispatch.record()
