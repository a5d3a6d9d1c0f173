"""Pretraining heads + InfoNCE loss, forward + backward: per-sample loops vs batched vs fused.

From the encoder output h [B, P + 2, C] (requires grad), input patches [B, P, D] and the mask
index [B, M]: gather the masked outputs, cpredlayer (Linear(C, C), ReLU, Linear(C, D)), gather
the targets, InfoNCE (nce and the column-argmax accuracy), then nce.backward().

``loop``     the reference's formulation: Python loops over samples (cpredlayer per sample,
             ``mm``, ``softmax``/``argmax``, ``log_softmax`` diagonal);
``batched``  the model's batched torch heads (``ssast_fast.model.heads``);
``fused``    batched heads with the Triton InfoNCE op (CUDA only).

B=24, M=400 masked of P=512 patches, C=768 (SSAST-Base), D=256; float32 on CPU, float32 and
bfloat16 on a GPU. Run: python -m pytest benchmarks/bench_infonce.py --benchmark-only
(do not set TRITON_INTERPRET). The helpers are shared with benchmarks/gpu_suite.py.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ssast_fast.model import heads
from ssast_fast.ops.infonce import infonce

VARIANTS = ("loop", "batched", "fused")
CLS = 2  # cls + distillation tokens in front of the patch tokens


def make_inputs(B=24, M=400, P=512, C=768, D=256, dtype=torch.float32, device="cpu", seed=0):
    """(h [B, P+2, C] leaf, patches [B, P, D], mask_index [B, M], cpredlayer) on device."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, P + CLS, C, generator=g).to(device, dtype).requires_grad_()
    patches = torch.randn(B, P, D, generator=g).to(device, dtype)
    idx = torch.stack([torch.randperm(P, generator=g)[:M] for _ in range(B)]).to(device)
    torch.manual_seed(seed)
    cpred = nn.Sequential(nn.Linear(C, C), nn.ReLU(), nn.Linear(C, D)).to(device, dtype)
    return h, patches, idx, cpred


def heads_loop(h, patches, idx, cpred):
    """The reference's per-sample loops -> (acc, nce)."""
    B, M = idx.shape
    D = patches.shape[-1]
    pred = torch.empty(B, M, D, device=h.device, dtype=h.dtype)
    targets = torch.empty(B, M, D, device=h.device, dtype=h.dtype)
    for i in range(B):
        pred[i] = cpred(h[i, idx[i] + CLS, :])
        targets[i] = patches[i, idx[i], :].clone()
    nce = torch.zeros((), device=h.device)
    correct = torch.zeros((), device=h.device)
    arange = torch.arange(M, device=h.device)
    for i in range(B):
        total = torch.mm(targets[i], pred[i].t())
        correct += torch.sum(torch.eq(torch.argmax(torch.softmax(total, dim=-1), dim=0), arange))
        nce += torch.sum(torch.diag(torch.log_softmax(total, dim=-1)))
    return correct / (B * M), nce / (-1.0 * B * M)


def heads_batched(h, patches, idx, cpred, backend="torch"):
    """Batched gathers + cpredlayer + the InfoNCE op (torch reference or fused Triton)."""
    pred = cpred(heads.gather_rows(h, idx + CLS))
    targets = heads.gather_rows(patches, idx)
    return infonce(targets, pred, backend=backend)


def make_step(variant: str, h, patches, idx, cpred):
    """A zero-argument callable: one forward + backward of `variant`; returns (acc, nce)."""
    def step():
        if variant == "loop":
            acc, nce = heads_loop(h, patches, idx, cpred)
        else:
            acc, nce = heads_batched(h, patches, idx, cpred,
                                     backend="triton" if variant == "fused" else "torch")
        nce.backward()
        return acc, nce

    return step


def zero_grads(h, cpred) -> None:
    h.grad = None
    cpred.zero_grad(set_to_none=True)


def _bench(benchmark, variant, device, dtype, rounds):
    h, patches, idx, cpred = make_inputs(dtype=dtype, device=device)
    step = make_step(variant, h, patches, idx, cpred)

    def run():
        step()
        if device == "cuda":
            torch.cuda.synchronize()

    benchmark.extra_info.update(variant=variant, device=device, dtype=str(dtype), B=24, M=400,
                                C=768, D=256)
    benchmark.pedantic(run, setup=lambda: zero_grads(h, cpred), rounds=rounds, iterations=1,
                       warmup_rounds=1)


@pytest.mark.parametrize("variant", ["loop", "batched"])
def test_heads_cpu(benchmark, variant):
    torch.set_num_threads(2)
    _bench(benchmark, variant, "cpu", torch.float32, rounds=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_heads_gpu(benchmark, variant, dtype):
    _bench(benchmark, variant, "cuda", dtype, rounds=30)
