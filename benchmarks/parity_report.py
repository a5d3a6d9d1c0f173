"""Print ssast_fast's measured errors against the golden reference fixtures (CPU, float32).

Usage: python benchmarks/parity_report.py [--attn-backend sdpa|eager]
Per case and task: the loss / logits rel-L2, encoder-output rel-L2, the worst stored
parameter-gradient rel-L2, the input-gradient rel-L2 (or norm error where only stats exist)
and the number of flipped accuracy positions.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from golden import golden_root, model_manifest, rel_l2  # noqa: E402
from model.test_golden_model import capture_encoder, finetune_model, npz, pretrain_model  # noqa: E402


def worst_grad(model, meta) -> float:
    """Worst rel-L2 over stored gradients; over norms where only statistics are stored."""
    from safetensors.numpy import load_file

    g = meta["grads"]
    zero = set(g.get("analytically_zero", {}).get("keys", []))
    stored = load_file(golden_root() / "model" / g["file"]) if g["file"] else {}
    params = dict(model.named_parameters())
    errs = [rel_l2(params[k].grad, stored[k]) if k in stored
            else abs(params[k].grad.double().norm().item() - l2) / l2
            for k, l2 in zip(g["stats"]["keys"], g["stats"]["l2"]) if k not in zero]
    return max(errs)


def input_grad_err(x, meta, z) -> float:
    ig = meta["input_grad"]
    if ig["key"]:
        return rel_l2(x.grad, z[ig["key"]])
    return abs(x.grad.double().norm().item() - ig["l2"]) / ig["l2"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--attn-backend", default="sdpa", choices=["sdpa", "eager"])
    args = ap.parse_args()
    man = model_manifest()
    print(f"{'case':28s} {'task':10s} {'output':>9s} {'encoder':>9s} {'grad max':>9s} {'x grad':>9s} flips")
    for cid, case in man["cases"].items():
        z = npz(cid)
        for task, meta in case["tasks"].items():
            x = torch.from_numpy(z["x"]).requires_grad_(True)
            flips = ""
            if case["stage"] == "pretrain":
                model = pretrain_model(cid, args.attn_backend)
                enc = capture_encoder(model)
                call = meta["forward_call"]
                random.seed(meta["python_random_seed"])
                out = model(x, call["task"], cluster=call["cluster"], mask_patch=call["mask_patch"])
                if task == "mpc":
                    (acc, loss), ref = out, z["mpc.nce"]
                    n = z[meta["masks"]["key"]].size
                    flips = str(abs(round(acc.item() * n) - round(float(z["mpc.acc"]) * n)))
                else:
                    loss, ref = out, z["mpg.mse"]
                err = rel_l2(loss.item(), ref)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    model = finetune_model(cid, args.attn_backend, Path(tmp))
                enc = capture_encoder(model)
                out = model(x, task)
                err = rel_l2(out.detach(), z[f"{task}.logits"])
                loss = out.sum()
            em = meta["encoder_out"]
            enc_err = (rel_l2(enc["out"], z[em["key"]]) if em["key"]
                       else abs(enc["out"].double().norm().item() - em["l2"]) / em["l2"])
            loss.backward()
            print(f"{cid:28s} {task:10s} {err:9.2e} {enc_err:9.2e} {worst_grad(model, meta):9.2e} "
                  f"{input_grad_err(x, meta, z):9.2e} {flips}")


if __name__ == "__main__":
    main()
