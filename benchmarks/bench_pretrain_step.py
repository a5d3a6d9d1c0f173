"""Joint pretraining step (mpc + mpg, fwd + bwd), tiny model, B=8, 1024 frames, mask 400, CPU.

Run: python -m pytest benchmarks/bench_pretrain_step.py --benchmark-only
- reference: the reference-equivalent eager path (benchmarks/reference_path.py): per-sample
  Python loops, exact Python masks, dense mask multiply, eager attention, fp32.
- ours: fast masks (C++ on CPU), batched heads, attention "auto", the reference's two masked
  encoder passes (run as one encoder call on a 2B batch).
- ours_shared: the same with shared_mask=True (one pass feeds both heads; a deviation).
- *_bf16: the same under torch.autocast(bfloat16) (losses stay fp32); "auto" attention is then
  the AMX kernel where the CPU has AMX-BF16; ours_bf16_sdpa forces SDPA to isolate the kernel.
"""
import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_path import ours_joint_step, reference_joint_step  # noqa: E402

from ssast_fast import ASTModel  # noqa: E402

B, FRAMES, MASK = 8, 1024, 400
SHAPE = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=FRAMES, model_size="tiny")


@pytest.mark.parametrize("variant", ["reference", "ours", "ours_shared", "ours_bf16", "ours_bf16_sdpa",
                                     "ours_bf16_shared"])
def test_joint_step_tiny_cpu(benchmark, variant):
    torch.manual_seed(0)
    random.seed(0)
    attn = {"reference": "eager", "ours_bf16_sdpa": "sdpa"}.get(variant, "auto")
    model = ASTModel(**SHAPE, attn_backend=attn,
                     mask_mode="reference" if variant == "reference" else "fast")
    x = torch.randn(B, FRAMES, 128)

    def step():
        model.zero_grad(set_to_none=True)
        if variant == "reference":
            return reference_joint_step(model, x, MASK)
        return ours_joint_step(model, x, MASK, shared_mask=variant.endswith("shared"), bf16="bf16" in variant)

    loss = benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)
    assert torch.isfinite(loss)
    benchmark.extra_info["clips_per_s"] = B / benchmark.stats.stats.median
