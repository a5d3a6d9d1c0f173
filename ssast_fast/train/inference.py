"""``eval`` (metrics of a fine-tuned model on a dataset) and ``embed`` (encoder embeddings to .npy)."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import torch

from ssast_fast.checkpoint import load_model_file
from ssast_fast.data import LabelMap
from ssast_fast.model import ASTModel
from ssast_fast.train.build import TaskModule, autocast, build_dataset, build_frontend, label_map, make_loader, \
    model_from_weights, model_input
from ssast_fast.train.config import SHAPE_KEYS, EmbedConfig, EvalConfig, InferenceConfig
from ssast_fast.train.distributed import DistInfo, pick_device
from ssast_fast.train.evaluation import evaluate
from ssast_fast.train.logs import print_summary, write_json
from ssast_fast.train.progress import Progress

# Settings a training checkpoint carries and that override the command line in eval / embed.
CARRIED = SHAPE_KEYS + ("dataset_mean", "dataset_std", "sample_rate", "loss")


def load_model(config: InferenceConfig) -> tuple[ASTModel, InferenceConfig]:
    """Model from ``config.checkpoint`` (training checkpoint or reference-format file) -> (model, config').

    With a training checkpoint its shape / normalization settings replace the given ones; with a
    reference file the given shape settings must describe the model.
    """
    sd, ck = load_model_file(config.checkpoint)
    if ck is not None:
        own = {f.name for f in dataclasses.fields(config)}
        config = dataclasses.replace(config, **{k: ck["config"][k] for k in CARRIED if k in ck["config"] and k in own})
    model = model_from_weights(sd, config)
    if model.pretrain_stage:
        config = dataclasses.replace(config, target_length=model.input_tdim, num_mel_bins=model.input_fdim)
    return model, config


def run_eval(config: EvalConfig) -> dict:
    """Evaluate a fine-tuned model on ``data_eval`` -> metrics; writes eval_metrics.json and
    predictions.npy / targets.npy under ``exp_dir``."""
    info = DistInfo(device=pick_device(config.device))
    model, config = load_model(config)
    if model.pretrain_stage:
        raise ValueError(f"{config.checkpoint} is a pretraining model; eval needs a fine-tuned one")
    if config.task not in ("ft_avgtok", "ft_cls"):
        config = dataclasses.replace(config, task="ft_avgtok")
    model = model.to(info.device)
    labels = label_map(config)
    n_out = model.mlp_head[1].out_features
    if len(labels) != n_out:
        raise ValueError(f"--label-csv lists {len(labels)} classes, the model predicts {n_out}")
    ds = build_dataset(config, config.data_eval, False, labels)
    prog = Progress("eval", 0, enabled=config.progress, interval=config.progress_interval)
    stats = evaluate(TaskModule(model), ds, build_frontend(config, False).to(info.device), config, info, prog)
    prog.close()
    os.makedirs(config.exp_dir, exist_ok=True)
    np.save(os.path.join(config.exp_dir, "predictions.npy"), stats.pop("_scores").astype(np.float32))
    np.save(os.path.join(config.exp_dir, "targets.npy"), stats.pop("_targets").astype(np.float32))
    write_json(os.path.join(config.exp_dir, "eval_metrics.json"), stats)
    print_summary(f"evaluation on {config.data_eval}", {
        "clips": len(ds), "mAP": f"{stats['mAP']:.4f}", "mean AUC": f"{stats['mAUC']:.4f}",
        "d-prime": f"{stats['d_prime']:.4f}", "accuracy": f"{stats['acc']:.4f}", "loss": f"{stats['loss']:.4f}",
        "outputs": os.path.join(config.exp_dir, "eval_metrics.json") + ", predictions.npy, targets.npy"})
    return stats


@torch.no_grad()
def run_embed(config: EmbedConfig) -> dict:
    """Encoder embeddings of every clip in ``data`` -> ``embeddings.npy`` [N, dim] (mean of the
    patch tokens, or the cls tokens with ``pool="cls"``), optionally ``patch_embeddings.npy``
    [N, patches, dim], and ``clips.json`` (the wav path of each row)."""
    info = DistInfo(device=pick_device(config.device))
    model, config = load_model(config)
    model = model.to(info.device).eval()
    ds = build_dataset(config, config.data, False, LabelMap({}, []))
    loader = make_loader(ds, config, info, train=False, epoch=0, batch_size=config.batch_size)
    frontend = build_frontend(config, False).to(info.device)
    clip, patch = [], []
    prog = Progress("embed", len(loader), enabled=config.progress, interval=config.progress_interval, unit="batch")
    for batch in loader:
        x = model_input(batch, frontend, info.device, noise=False)
        with autocast(config, info.device):
            h = model.forward_features(x).float()
        clip.append(model.pool(h, config.pool).cpu().numpy())
        if config.per_patch:
            patch.append(h[:, model.cls_token_num:].cpu().numpy().astype(np.float16 if config.patch_fp16 else np.float32))
        prog.update(x.shape[0])
    prog.close()
    os.makedirs(config.out, exist_ok=True)
    emb = np.concatenate(clip)
    np.save(os.path.join(config.out, "embeddings.npy"), emb)
    out = {"embeddings": os.path.join(config.out, "embeddings.npy"), "shape": list(emb.shape)}
    if config.per_patch:
        pe = np.concatenate(patch)
        np.save(os.path.join(config.out, "patch_embeddings.npy"), pe)
        out["patch_shape"] = list(pe.shape)
    with open(os.path.join(config.out, "clips.json"), "w") as f:
        json.dump(ds.paths, f, indent=0)
    print_summary("embeddings written", {"clips": len(ds), "per-clip": f"{emb.shape} -> {out['embeddings']}",
                                         **({"per-patch": str(out["patch_shape"])} if config.per_patch else {})})
    return out
