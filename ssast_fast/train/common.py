"""Pieces the pretraining and fine-tuning loops share: model and data set-up, the step input,
precision, logging (JSONL + CSV), plots, checkpoints and the end summary."""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import random
import shutil
import time
from argparse import Namespace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ssast_fast.checkpoint import (atomic_torch_save, capture_rng_state, load_model_file, load_reference,
                                   load_training_checkpoint, restore_rng_state, save_reference,
                                   save_training_checkpoint)
from ssast_fast.data import AudioDataset, LabelMap, add_noise, collate, load_label_csv
from ssast_fast.data.sampling import epoch_indices, load_sample_weights
from ssast_fast.ops import dispatch
from ssast_fast.train import backends
from ssast_fast.train.distributed import DistInfo, all_gather_objects, init_distributed, wrap_ddp
from ssast_fast.train.progress import Progress

log = logging.getLogger("ssast_fast.train")

# Keys of the config that fix the model and data shapes; a resume with other values is refused.
SHAPE_KEYS = ("task", "fshape", "tshape", "fstride", "tstride", "num_mel_bins", "target_length", "model_size", "n_class")


# ---- model ---------------------------------------------------------------------------------------
def model_options(args: Namespace) -> dict:
    """ASTModel keyword-only options from the run config (attention backend, mask mode)."""
    mode = getattr(args, "mask_mode", "reference")
    if mode == "fast":
        try:
            import ssast_fast.masking.fast  # noqa: F401
        except ImportError:
            log.warning("mask mode 'fast' is not available in this build; using 'reference'")
            mode = "reference"
    return {"attn_backend": getattr(args, "attn_backend", "auto"), "mask_mode": mode}


def build_pretrain_model(args: Namespace) -> nn.Module:
    """Pretraining ASTModel: stride = patch shape (no overlap), input [target_length, num_mel_bins]."""
    from ssast_fast import ASTModel

    return ASTModel(fshape=args.fshape, tshape=args.tshape, fstride=args.fshape, tstride=args.tshape,
                    input_fdim=args.num_mel_bins, input_tdim=args.target_length, model_size=args.model_size,
                    pretrain_stage=True, **model_options(args))


def load_weights(path_or_sd) -> dict[str, torch.Tensor]:
    """State dict from a training checkpoint, a reference-format file (read as plain data:
    :func:`ssast_fast.checkpoint.load_model_file`) or a mapping (prefixes stripped)."""
    if isinstance(path_or_sd, (str, os.PathLike)):
        return load_model_file(path_or_sd)[0]
    return load_reference(path_or_sd)


def load_model_weights(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(sd)`` (strict); ValueError naming ``source`` when the weights do not fit."""
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        raise ValueError(f"{source}: its weights do not fit the model these settings build: {exc}") from exc


def build_finetune_model(args: Namespace, pretrained) -> nn.Module:
    """Fine-tuning ASTModel built from pretrained weights (path in any format, or a mapping)."""
    from ssast_fast import ASTModel

    if pretrained is None:
        raise ValueError("fine-tuning needs --pretrained_mdl_path (a pretraining checkpoint)")
    return ASTModel(label_dim=args.n_class, fshape=args.fshape, tshape=args.tshape, fstride=args.fstride,
                    tstride=args.tstride, input_fdim=args.num_mel_bins, input_tdim=args.target_length,
                    model_size=args.model_size, pretrain_stage=False, load_pretrained_mdl_path=load_weights(pretrained),
                    **model_options(args))


def model_from_weights(sd: dict[str, torch.Tensor], args: Namespace) -> nn.Module:
    """Rebuild a model (pretraining or fine-tuned) around a saved state dict.

    Patch shape comes from ``v.patch_embed.proj.weight``; a pretraining state dict gives its input
    size (``p_input_*``); a fine-tuned one takes strides and input size from ``args`` and its class
    count from ``mlp_head``. The fine-tuning model is built from a throw-away pretraining skeleton,
    then the saved weights replace everything.
    """
    from ssast_fast import ASTModel

    fshape, tshape = sd["v.patch_embed.proj.weight"].shape[-2:]
    size = _model_size(sd)
    opts = model_options(args)
    if "mlp_head.1.weight" not in sd:
        m = ASTModel(fshape=int(fshape), tshape=int(tshape), fstride=int(fshape), tstride=int(tshape),
                     input_fdim=int(sd["p_input_fdim"]), input_tdim=int(sd["p_input_tdim"]), model_size=size,
                     pretrain_stage=True, **opts)
    else:
        skel = ASTModel(fshape=int(fshape), tshape=int(tshape), fstride=int(fshape), tstride=int(tshape),
                        input_fdim=args.num_mel_bins, input_tdim=args.target_length, model_size=size,
                        pretrain_stage=True, attn_backend="eager")
        m = ASTModel(label_dim=int(sd["mlp_head.1.weight"].shape[0]), fshape=int(fshape), tshape=int(tshape),
                     fstride=args.fstride, tstride=args.tstride, input_fdim=args.num_mel_bins,
                     input_tdim=args.target_length, model_size=size, pretrain_stage=False,
                     load_pretrained_mdl_path=skel.state_dict(), **opts)
    m.load_state_dict(sd)
    return m


def _model_size(sd: dict[str, torch.Tensor]) -> str:
    dim = sd["v.pos_embed"].shape[-1]
    sizes = {192: "tiny", 384: "small", 768: "base"}
    if dim not in sizes:
        raise ValueError(f"cannot tell the model size from embedding width {dim}")
    return "base_nokd" if dim == 768 and "v.dist_token" not in sd else sizes[dim]


class TaskModule(nn.Module):
    """Calls one task of the wrapped ASTModel from ``forward`` (so DDP sees every call).

    ``task == "pretrain_joint"`` runs ``pretrain_joint`` -> (acc, nce, mse); other tasks call the
    model's ``forward``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, task: str, mask_patch: int = 400, cluster: bool = True,
                shared_mask: bool = False):
        if task == "pretrain_joint":
            return self.model.pretrain_joint(x, mask_patch=mask_patch, cluster=cluster, shared_mask=shared_mask)
        return self.model(x, task, cluster=cluster, mask_patch=mask_patch)


def autocast(args: Namespace, device: torch.device):
    """bf16 autocast context for ``--precision bf16``; a no-op for fp32."""
    if getattr(args, "precision", "fp32") == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---- data ----------------------------------------------------------------------------------------
def build_frontend(args: Namespace, train: bool):
    """FrontEnd with the run's fbank settings; SpecAugment only for the training set."""
    from ssast_fast.features import FrontEnd

    fe = FrontEnd(sample_rate=args.sample_rate, num_mel_bins=args.num_mel_bins, target_length=args.target_length,
                  mean=args.dataset_mean, std=args.dataset_std, freqm=args.freqm if train else 0,
                  timem=args.timem if train else 0)
    return fe.train(train)


def label_map(args: Namespace) -> LabelMap:
    """The label CSV's LabelMap, or an empty one (pretraining ignores labels)."""
    if getattr(args, "label_csv", None):
        return load_label_csv(args.label_csv)
    return LabelMap({}, [])


def build_dataset(args: Namespace, json_path: str, train: bool, labels: LabelMap) -> AudioDataset:
    frontend = build_frontend(args, train) if args.fbank_in_workers else None
    return AudioDataset(json_path, labels, sample_rate=args.sample_rate, mixup=args.mixup if train else 0.0,
                        skip_bad_audio=args.skip_bad_audio, frontend=frontend,
                        noise=bool(args.noise) and train, seed=args.seed)


def make_loader(ds: AudioDataset, args: Namespace, info: DistInfo, *, train: bool, epoch: int,
                batch_size: int, skip_batches: int = 0) -> DataLoader:
    """Loader over this rank's share of epoch ``epoch``, the first ``skip_batches`` batches left out.

    Order (``ssast_fast.data.sampling.epoch_indices``): for training, balanced draws when the set
    has ``sample_weights`` (``--bal bal``), else shuffled by seed + epoch; so resuming mid-epoch
    only needs the count of batches already done. The loader gets its own torch generator, so
    creating it never draws from the global RNG.
    """
    weights = getattr(ds, "sample_weights", None) if train else None
    indices = epoch_indices(len(ds), weights, shuffle=train, seed=args.seed, epoch=epoch, rank=info.rank,
                            world=info.world)[skip_batches * batch_size:]
    ds.set_epoch(epoch)
    return DataLoader(ds, batch_size=batch_size, sampler=indices, num_workers=args.num_workers,
                      collate_fn=collate, drop_last=train, pin_memory=info.device.type == "cuda",
                      generator=torch.Generator().manual_seed(args.seed + epoch))


def stage_progress(stage: str, args: Namespace, info: DistInfo, per_epoch: int, step: int) -> Progress:
    """Progress of a training stage of ``n_epochs * per_epoch`` steps on rank 0 (``--progress``)."""
    return Progress(stage, args.n_epochs * per_epoch, step, enabled=info.is_main and args.progress,
                    interval=args.progress_interval)


def steps_per_epoch(ds: AudioDataset, info: DistInfo, batch_size: int) -> int:
    per_rank = math.ceil(len(ds) / info.world)
    return per_rank // batch_size


def model_input(batch: dict, frontend, device: torch.device, *, noise: bool) -> torch.Tensor:
    """Batch -> normalized spectrograms [B, target_length, bins] on ``device``.

    Waveforms go through ``frontend`` on ``device`` (fbank, pad/cut, SpecAugment when the
    frontend is in train mode, normalization), then noise augmentation when ``noise``. Batches
    whose spectrograms came from the workers are only moved.
    """
    if "fbank" in batch:
        return batch["fbank"].to(device, non_blocking=True)
    wave = batch["wave"].to(device, non_blocking=True)
    with torch.no_grad():
        feats = frontend(wave, batch["lengths"].to(device))
        if noise:
            feats = add_noise(feats)
    return feats


def check_finite(running, step: int) -> None:
    """Raise FloatingPointError if a running loss sum (tensor or float) is NaN/Inf: one host sync,
    done before logging and before any checkpoint, so a diverged model is never saved."""
    if not bool(torch.isfinite(torch.as_tensor(running)).all()):
        raise FloatingPointError(f"training diverged by step {step} (non-finite loss)")


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python ``random`` (masks), NumPy and torch; each rank gets ``seed + rank``."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


# ---- logging / outputs ---------------------------------------------------------------------------
class MetricsLog:
    """Rows ``{"split": ..., "step": ..., ...}`` appended to ``metrics.jsonl`` (the record), with
    per-split CSV copies (``train_log.csv``, ``val_log.csv``) regenerated by :meth:`export`."""

    def __init__(self, exp_dir: str, enabled: bool = True) -> None:
        self.exp_dir, self.enabled = exp_dir, enabled
        self.path = os.path.join(exp_dir, "metrics.jsonl")

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run writes them again)."""
        if not self.enabled or not os.path.exists(self.path):
            return
        rows = [r for r in self.rows() if r.get("step", 0) <= step]
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def rows(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def export(self) -> None:
        """Write ``<split>_log.csv`` for every split in the JSONL."""
        if not self.enabled:
            return
        rows = self.rows()
        for split in sorted({r["split"] for r in rows}):
            sel = [r for r in rows if r["split"] == split]
            keys = list(dict.fromkeys(k for r in sel for k in r if not isinstance(r[k], (list, dict))))
            with open(os.path.join(self.exp_dir, f"{split}_log.csv"), "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
                w.writeheader()
                w.writerows(sel)


def plot_curves(log_: MetricsLog, path: str, panels: list[tuple[str, str]]) -> None:
    """PNG with one panel per ``(split, key)`` series against the step."""
    if not log_.enabled:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = log_.rows()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (split, key) in zip(axes[0], panels):
        pts = [(r["step"], r[key]) for r in rows if r["split"] == split and isinstance(r.get(key), (int, float))]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="." if len(pts) < 50 else None)
        ax.set_title(f"{split} {key}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_mask(spec: torch.Tensor, masked: torch.Tensor, pred: torch.Tensor, path: str) -> None:
    """PNG of a clip [F, T] and the outputs of model task ``visualize_mask`` (``masked``: 99 on
    masked patches; ``pred``: 99 on masked patches predicted right, 0 on the ones predicted wrong):
    masked patches drawn white, and in the last panel wrong predictions black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = spec.float().cpu().numpy()
    is_masked = masked.float().cpu().numpy() == 99.0
    right = is_masked & (pred.float().cpu().numpy() == 99.0)
    lo, hi = float(s.min()), float(s.max())
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white", under="black")
    shown_mask = np.where(is_masked, np.nan, s)
    shown_pred = np.where(right, np.nan, np.where(is_masked, lo - 1.0, s))
    fig, axes = plt.subplots(3, 1, figsize=(10, 7.5))
    titles = ("input (normalized log-mel)", f"masked patches in white ({int(is_masked.sum())} cells)",
              f"white: masked patch predicted right, black: wrong ({int(right.sum())}/{int(is_masked.sum())} cells right)")
    for ax, img, title in zip(axes, (s, shown_mask, shown_pred), titles):
        ax.imshow(img, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title)
        ax.set_ylabel("mel bin")
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Throughput:
    """Clips per second over a window of steps."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.t0, self.clips = time.perf_counter(), 0

    def add(self, n: int) -> None:
        self.clips += n

    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return self.clips / dt if dt > 0 else float("nan")


def config_dict(args: Namespace) -> dict:
    """JSON-friendly copy of the run's arguments."""
    return {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, type(None), list))}


def check_resume_config(saved: dict, args: Namespace) -> None:
    """ValueError when ``--resume`` names a checkpoint made with other shape settings (those that
    pretraining ignores -- classes, strides -- are not compared there) or another lr schedule."""
    ignored = ("n_class", "fstride", "tstride") if args.task.startswith("pretrain") else ()
    bad = [k for k in SHAPE_KEYS + ("adaptschedule",)
           if k not in ignored and k in saved and saved[k] != getattr(args, k, None)]
    if bad:
        raise ValueError("--resume: the checkpoint was made with other settings for "
                         + ", ".join(f"{k} ({saved[k]!r} != {getattr(args, k, None)!r})" for k in bad))


def resume_path(args: Namespace) -> str | None:
    """``--resume``: None, a path, or ``auto`` = ``<exp-dir>/checkpoints/last.pt`` if it exists."""
    r = getattr(args, "resume", None)
    if not r:
        return None
    if r == "auto":
        p = os.path.join(args.exp_dir, "checkpoints", "last.pt")
        return p if os.path.exists(p) else None
    return r


def start_run(args: Namespace) -> DistInfo:
    """A training run's first steps: the process group (:func:`init_distributed`), ``--exp-dir``
    created on rank 0, every RNG seeded (:func:`seed_everything`, ``seed + rank``)."""
    info = init_distributed(args.device)
    if info.is_main:
        os.makedirs(args.exp_dir, exist_ok=True)
    seed_everything(args.seed, info.rank)
    return info


def build_data(args: Namespace, info: DistInfo, labels: LabelMap) -> tuple[AudioDataset, AudioDataset, nn.Module, nn.Module]:
    """``(train set, validation set, train frontend, validation frontend)``, frontends on the
    run's device; the validation set defaults to the training data. With ``--bal bal`` the
    training set carries ``sample_weights`` (``ssast_fast.data.sampling``)."""
    train_ds = build_dataset(args, args.data_train, True, labels)
    if getattr(args, "bal", None) == "bal":
        train_ds.sample_weights = load_sample_weights(args.data_train, len(train_ds))
    val_ds = build_dataset(args, args.data_val or args.data_train, False, labels)
    frontend = build_frontend(args, True).to(info.device)
    val_frontend = build_frontend(args, False).to(info.device)
    return train_ds, val_ds, frontend, val_frontend


def load_resume_checkpoint(args: Namespace) -> tuple[str | None, dict | None]:
    """``(path, checkpoint)`` to resume from (:func:`resume_path`), its config checked against
    ``args`` (:func:`check_resume_config`); ``(None, None)`` for a fresh run."""
    path = resume_path(args)
    if not path:
        return None, None
    ck = load_training_checkpoint(path)
    check_resume_config(ck["config"], args)
    return path, ck


def resume_or_start(ck: dict | None, path: str | None, args: Namespace, config: dict, optimizer,
                    scheduler, info: DistInfo, mlog: MetricsLog, fresh_extra: dict) -> tuple[int, int, dict]:
    """The loop state ``(step, epoch, extra)`` to start from.

    Resuming (``ck`` from :func:`load_resume_checkpoint`; the model's weights are the caller's
    business): optimizer and scheduler states, this rank's RNG streams (``extra["rank_rng"]``
    of a multi-process run, else the saved ones), metrics logged after the saved step dropped,
    a line on rank 0; ``extra`` is the checkpoint's. A fresh run: rank 0 writes
    ``config.json``; ``(0, 0, fresh_extra)``.
    """
    if ck is None:
        if info.is_main:
            write_json(os.path.join(args.exp_dir, "config.json"), config)
        return 0, 0, fresh_extra
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    step, epoch, extra = ck["step"], ck["epoch"], ck["extra"]
    dispatch.load_state_dict(extra.get("dispatch"))  # the kernel choices of the saved run
    restore_rng_state(extra.get("rank_rng", {}).get(info.rank, ck["rng"]) if info.enabled else ck["rng"])
    mlog.truncate_after(step)
    if info.is_main:
        print(f"resumed from {path}: step {step}, epoch {epoch + 1}, batch {extra['batches_done']}", flush=True)
    return step, epoch, extra


def prepare_training(model: nn.Module, train_ds: AudioDataset, args: Namespace,
                     info: DistInfo) -> tuple[nn.Module, "Checkpointer", int]:
    """``(net, checkpointer, steps per epoch)``: ``net`` is the model's :class:`TaskModule`,
    compiled with ``--compile``, wrapped in DDP when distributed. Raises ValueError when the
    training set has fewer clips than one batch per process."""
    backends.settle(model, args, info)  # kernel self-checks and measured choices, before tracing
    net = torch.compile(TaskModule(model)) if args.compile else TaskModule(model)
    net = wrap_ddp(net, info)
    ckpt = Checkpointer(args.exp_dir, info.is_main)
    per_epoch = steps_per_epoch(train_ds, info, args.batch_size)
    if per_epoch == 0:
        raise ValueError(f"{args.data_train}: fewer clips than one batch ({args.batch_size} per process)")
    return net, ckpt, per_epoch


def checkpoint_extra(info: DistInfo, **loop_state) -> dict:
    """The ``extra`` of a training checkpoint: ``loop_state`` (batches done, best metric, ...)
    and, in a multi-process run, every rank's RNG streams (masks, SpecAugment) under
    ``"rank_rng"`` for an exact resume. Collective: every rank must call it."""
    extra = dict(loop_state, dispatch=dispatch.state_dict())  # a resume keeps the kernel choices
    if info.enabled:
        extra["rank_rng"] = dict(enumerate(all_gather_objects(capture_rng_state(), info)))
    return extra


class Checkpointer:
    """Writes ``checkpoints/last.pt`` (training format) with ``models/audio_model.pth`` (the reference's
    format) and, as links to those two new files (copies where links fail), ``checkpoints/best.pt``,
    ``models/best_audio_model.pth`` and the per-epoch ``models/audio_model.<N>.pth``; rank 0 only."""

    def __init__(self, exp_dir: str, enabled: bool) -> None:
        self.dir = os.path.join(exp_dir, "checkpoints")
        self.models = os.path.join(exp_dir, "models")
        self.enabled = enabled
        if enabled:
            os.makedirs(self.dir, exist_ok=True)
            os.makedirs(self.models, exist_ok=True)

    def save(self, model, optimizer, scheduler, step: int, epoch: int, config: dict, extra: dict, *,
             best: bool = False, epoch_model: int | None = None) -> None:
        """The training state as ``last`` (and ``best`` when ``best``); ``epoch_model``: also as
        ``models/audio_model.<epoch_model>.pth``."""
        if not self.enabled:
            return
        last, model_file = os.path.join(self.dir, "last.pt"), os.path.join(self.models, "audio_model.pth")
        save_training_checkpoint(last, model=model, optimizer=optimizer, scheduler=scheduler, step=step, epoch=epoch,
                                 config=config, extra=extra)
        save_reference(model, model_file)
        if best:
            _link_or_copy(last, os.path.join(self.dir, "best.pt"))
            _link_or_copy(model_file, os.path.join(self.models, "best_audio_model.pth"))
        if epoch_model is not None:
            _link_or_copy(model_file, self.epoch_model_path(epoch_model))

    def epoch_model_path(self, n: int) -> str:
        """``models/audio_model.<n>.pth``: the reference's per-epoch (per-evaluation) model file."""
        return os.path.join(self.models, f"audio_model.{n}.pth")


def _link_or_copy(src: str, dst: str) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy where the file system has none), atomically:
    ``src`` is later replaced by ``os.replace``, never written in place, so ``dst`` keeps this content."""
    tmp = f"{dst}.{os.getpid()}.tmp"
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def write_result_csv(path: str, rows: list[list[float]], n_rows: int | None = None) -> None:
    """The reference's ``result.csv``: ``rows`` as comma-separated floats (``%.18e``), zero rows
    appended up to ``n_rows`` (fine-tuning writes one row per planned epoch)."""
    width = len(rows[0]) if rows else 0
    table = np.zeros((max(n_rows or 0, len(rows)), width))
    for i, r in enumerate(rows):
        table[i] = r
    tmp = path + ".tmp"
    np.savetxt(tmp, table, delimiter=",")
    os.replace(tmp, path)


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=float)
    os.replace(tmp, path)


def print_summary(title: str, lines: dict) -> None:
    width = max(len(k) for k in lines)
    print(f"\n==== {title} " + "=" * max(0, 60 - len(title)))
    for k, v in lines.items():
        print(f"  {k:<{width}} : {v}")
    print("=" * 66, flush=True)


__all__ = ["Checkpointer", "MetricsLog", "TaskModule", "Throughput", "atomic_torch_save", "autocast",
           "build_data", "build_dataset", "build_finetune_model", "build_frontend", "build_pretrain_model", "check_resume_config",
           "load_model_weights",
           "checkpoint_extra", "config_dict", "label_map", "load_resume_checkpoint", "load_weights", "make_loader",
           "model_from_weights", "model_input", "plot_curves", "plot_mask", "prepare_training", "print_summary",
           "resume_or_start", "resume_path", "seed_everything", "stage_progress", "start_run", "steps_per_epoch", "write_json", "write_result_csv"]
