"""``eval`` (metrics of a fine-tuned model on a dataset) and ``embed`` (encoder embeddings to .npy)."""
from __future__ import annotations

import json
import os
from argparse import Namespace

import numpy as np
import torch

from ssast_fast.checkpoint import load_model_file
from ssast_fast.train import common as C
from ssast_fast.train.distributed import DistInfo, pick_device
from ssast_fast.train.progress import Progress

# Settings a training checkpoint carries and that override the command line in eval / embed.
CARRIED = C.SHAPE_KEYS + ("dataset_mean", "dataset_std", "sample_rate", "loss")


def load_model(args: Namespace) -> tuple[torch.nn.Module, Namespace]:
    """Model from ``args.checkpoint`` (training checkpoint or reference-format file) -> (model, args').

    With a training checkpoint its shape / normalization settings replace the command line's;
    with a reference file the command line's shape flags must describe the model.
    """
    args = Namespace(**vars(args))
    sd, ck = load_model_file(args.checkpoint)
    for k in CARRIED if ck is not None else ():
        if k in ck["config"]:
            setattr(args, k, ck["config"][k])
    model = C.model_from_weights(sd, args)
    if model.pretrain_stage:
        args.target_length, args.num_mel_bins = model.input_tdim, model.input_fdim
    return model, args


def run_eval(args: Namespace) -> dict:
    """Evaluate a fine-tuned model on ``--data-eval`` -> metrics; writes eval_metrics.json and
    predictions.npy / targets.npy under ``--exp-dir``."""
    from ssast_fast.train.finetune import evaluate

    info = DistInfo(device=pick_device(args.device))
    model, args = load_model(args)
    if model.pretrain_stage:
        raise ValueError(f"{args.checkpoint} is a pretraining model; eval needs a fine-tuned one")
    if args.task not in ("ft_avgtok", "ft_cls"):
        args.task = "ft_avgtok"
    model = model.to(info.device)
    labels = C.label_map(args)
    n_out = model.mlp_head[1].out_features
    if len(labels) != n_out:
        raise ValueError(f"--label-csv lists {len(labels)} classes, the model predicts {n_out}")
    ds = C.build_dataset(args, args.data_eval, False, labels)
    prog = Progress("eval", 0, enabled=args.progress, interval=args.progress_interval)
    stats = evaluate(C.TaskModule(model), ds, C.build_frontend(args, False).to(info.device), args, info, prog)
    prog.close()
    os.makedirs(args.exp_dir, exist_ok=True)
    np.save(os.path.join(args.exp_dir, "predictions.npy"), stats.pop("_scores").astype(np.float32))
    np.save(os.path.join(args.exp_dir, "targets.npy"), stats.pop("_targets").astype(np.float32))
    C.write_json(os.path.join(args.exp_dir, "eval_metrics.json"), stats)
    C.print_summary(f"evaluation on {args.data_eval}", {
        "clips": len(ds), "mAP": f"{stats['mAP']:.4f}", "mean AUC": f"{stats['mAUC']:.4f}",
        "d-prime": f"{stats['d_prime']:.4f}", "accuracy": f"{stats['acc']:.4f}", "loss": f"{stats['loss']:.4f}",
        "outputs": os.path.join(args.exp_dir, "eval_metrics.json") + ", predictions.npy, targets.npy"})
    return stats


@torch.no_grad()
def run_embed(args: Namespace) -> dict:
    """Encoder embeddings of every clip in ``--data`` -> ``embeddings.npy`` [N, dim] (mean of the
    patch tokens, or the cls tokens with ``--pool cls``), optionally ``patch_embeddings.npy``
    [N, patches, dim], and ``clips.json`` (the wav path of each row)."""
    info = DistInfo(device=pick_device(args.device))
    model, args = load_model(args)
    model = model.to(info.device).eval()
    args.mixup, args.noise = 0.0, False
    ds = C.build_dataset(args, args.data, False, C.LabelMap({}, []))
    loader = C.make_loader(ds, args, info, train=False, epoch=0, batch_size=args.batch_size)
    frontend = C.build_frontend(args, False).to(info.device)
    clip, patch = [], []
    ncls = model.cls_token_num
    prog = Progress("embed", len(loader), enabled=args.progress, interval=args.progress_interval, unit="batch")
    for batch in loader:
        x = C.model_input(batch, frontend, info.device, noise=False)
        with C.autocast(args, info.device):
            h = model.forward_features(x).float()
        pooled = model.pool(h, args.pool)
        clip.append(pooled.cpu().numpy())
        if args.per_patch:
            patch.append(h[:, ncls:].cpu().numpy().astype(np.float16 if args.patch_fp16 else np.float32))
        prog.update(x.shape[0])
    prog.close()
    os.makedirs(args.out, exist_ok=True)
    emb = np.concatenate(clip)
    np.save(os.path.join(args.out, "embeddings.npy"), emb)
    out = {"embeddings": os.path.join(args.out, "embeddings.npy"), "shape": list(emb.shape)}
    if args.per_patch:
        pe = np.concatenate(patch)
        np.save(os.path.join(args.out, "patch_embeddings.npy"), pe)
        out["patch_shape"] = list(pe.shape)
    with open(os.path.join(args.out, "clips.json"), "w") as f:
        json.dump(ds.paths, f, indent=0)
    C.print_summary("embeddings written", {"clips": len(ds), "per-clip": f"{emb.shape} -> {out['embeddings']}",
                                           **({"per-patch": str(out["patch_shape"])} if args.per_patch else {})})
    return out
