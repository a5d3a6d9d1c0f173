"""The autograd formula shared by the attention custom ops (Triton and the bf16 CPU kernel).

Each forward op maps ``(q, k, v, scale) -> (out, stat)`` (stat: a per-row softmax statistic with
no gradient) and has a backward op ``(do, q, k, v, out, stat, scale) -> (dq, dk, dv)``.
"""
from __future__ import annotations

from typing import Callable

import torch


def register_attention_autograd(fwd_name: str, bwd_op: Callable) -> None:
    """Make the forward op ``fwd_name`` differentiable in q, k, v through ``bwd_op``."""

    def setup_context(ctx, inputs, output):
        q, k, v, scale = inputs
        out, stat = output
        ctx.save_for_backward(q, k, v, out, stat)
        ctx.scale = scale

    def backward(ctx, grad_out, grad_stat):
        q, k, v, out, stat = ctx.saved_tensors
        if grad_out is None:
            return None, None, None, None
        dq, dk, dv = bwd_op(grad_out, q, k, v, out, stat, ctx.scale)
        return dq, dk, dv, None

    torch.library.register_autograd(fwd_name, backward, setup_context=setup_context)
