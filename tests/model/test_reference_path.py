"""The benchmarks' reference-equivalent path computes the same numbers as ASTModel."""
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from reference_path import reference_mpc, reference_mpg  # noqa: E402

from ssast_fast import ASTModel  # noqa: E402


def test_reference_path_matches_model():
    torch.manual_seed(0)
    model = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_tdim=128, model_size="tiny",
                     attn_backend="eager")
    x = torch.randn(3, 128, 128)
    for cluster in (True, False):
        random.seed(1)
        acc_ref, nce_ref = reference_mpc(model, x, 20, cluster)
        random.seed(1)
        acc, nce = model(x, "pretrain_mpc", cluster=cluster, mask_patch=20)
        assert acc_ref.item() == acc.item()
        torch.testing.assert_close(nce_ref, nce, rtol=1e-6, atol=0)
        random.seed(2)
        mse_ref = reference_mpg(model, x, 20, cluster)
        random.seed(2)
        torch.testing.assert_close(mse_ref, model(x, "pretrain_mpg", cluster=cluster, mask_patch=20), rtol=1e-6, atol=0)
