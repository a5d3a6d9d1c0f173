"""Self-supervised pretraining loop (reference recipe, SPEC.md section 4).

Adam(lr, weight_decay 5e-7, betas (0.95, 0.999)); warm-up: while step <= 1000 and step % 50 == 0
the lr is set to step / 1000 * lr before the step (so the very first step runs at lr 0, as in the
reference; ``--warmup`` is ignored, as there); every ``epoch_iter`` steps: validation with 400
masked patches, ReduceLROnPlateau (mode max on masked accuracy -- on -mse for pretrain_mpg --,
factor 0.5, patience lr_patience), checkpoints, a row of ``result.csv`` (the reference's columns,
:func:`result_row`) and, with ``--epoch-models``, ``models/audio_model.<evaluation + 1>.pth``.
Loss: pretrain_joint nce + 10 mse; pretrain_mpc nce; pretrain_mpg mse.

Deviation: the reference keeps as "best" the model with the best *training-batch* accuracy at the
evaluation step; here best is the best validation masked accuracy (or lowest validation mse).
"""
from __future__ import annotations

import logging
import math
import os
import time
from argparse import Namespace

import numpy as np
import torch

from ssast_fast.data import LabelMap
from ssast_fast.train import common as C
from ssast_fast.train.distributed import all_reduce_mean, shutdown
from ssast_fast.train.options import check_training_args

log = logging.getLogger("ssast_fast.train")
VAL_MASK_PATCH = 400


def warmup_lr(step: int, base_lr: float, warmup_steps: int = 1000) -> float | None:
    """The reference warm-up: the lr to set before ``step`` (None: leave it as it is).

    ``step / warmup_steps * base_lr``, set every ``warmup_steps // 20`` steps (every 50 of the
    reference's 1000) and at ``step == warmup_steps``; nothing after the warm-up, nothing at all
    for ``warmup_steps <= 0``.
    """
    if warmup_steps <= 0:
        return None
    every = max(1, warmup_steps // 20)
    if step <= warmup_steps and (step % every == 0 or step == warmup_steps):
        return step / warmup_steps * base_lr
    return None


def run_task(net, x: torch.Tensor, args: Namespace, mask_patch: int, cluster: bool):
    """-> (loss, acc, nce, mse) for the configured pretraining task (missing terms are NaN)."""
    nan = torch.tensor(float("nan"))
    if args.task == "pretrain_joint":
        acc, nce, mse = net(x, "pretrain_joint", mask_patch=mask_patch, cluster=cluster, shared_mask=args.shared_mask)
        return nce + 10 * mse, acc, nce, mse
    if args.task == "pretrain_mpc":
        acc, nce = net(x, "pretrain_mpc", mask_patch=mask_patch, cluster=cluster)
        return nce, acc, nce, nan
    mse = net(x, "pretrain_mpg", mask_patch=mask_patch, cluster=cluster)
    return mse, nan, nan, mse


@torch.no_grad()
def validate(net, loader, frontend, args: Namespace, info, mask_patch: int, cluster: bool) -> dict:
    """Mean masked accuracy / nce / mse over the validation loader (this rank), averaged over ranks."""
    net.eval()
    accs, nces, mses = [], [], []
    for batch in loader:
        x = C.model_input(batch, frontend, info.device, noise=False)
        with C.autocast(args, info.device):
            _, acc, nce, mse = run_task(net, x, args, mask_patch, cluster)
        accs.append(float(acc)), nces.append(float(nce)), mses.append(float(mse))
    net.train()
    vals = [float(np.mean(v)) if v else float("nan") for v in (accs, nces, mses)]
    acc, nce, mse = all_reduce_mean(vals, info)
    return {"acc": acc, "nce": nce, "mse": mse}


def result_row(task: str, window: list[float], val: dict, lr: float) -> list[float]:
    """A row of the reference's pretraining ``result.csv``: training masked accuracy and loss averaged
    since the last evaluation, validation accuracy and nce, lr. As the reference, pretrain_mpg puts
    its mse in both accuracy columns and pretrain_joint its validation mse in the nce column."""
    loss, acc = window
    if task == "pretrain_mpg":
        return [loss, loss, val["mse"], val["mse"], lr]
    return [acc, loss, val["acc"], val["mse"] if task == "pretrain_joint" else val["nce"], lr]


def initial_weights(args: Namespace) -> dict | None:
    """``--pretrained_mdl_path`` in pretraining (ours; the reference ignores it): the state dict the
    model starts from, read before anything is written."""
    return C.load_weights(args.pretrained_mdl_path) if args.pretrained_mdl_path else None


def pretrain(args: Namespace) -> dict:
    """Run (or resume) pretraining as configured by ``args`` (the CLI's namespace) -> summary dict."""
    check_training_args(args)
    ckpt_path, ck = C.load_resume_checkpoint(args)
    init = initial_weights(args) if ck is None else None
    info = C.start_run(args)
    main = info.is_main
    train_ds, val_ds, frontend, val_frontend = C.build_data(args, info, LabelMap({}, []))  # labels unused

    model = C.build_pretrain_model(args).to(info.device)
    if init is not None:
        C.load_model_weights(model, init, args.pretrained_mdl_path)
    cluster = model.cluster  # frame masking when patches span all bins
    val_mask = min(VAL_MASK_PATCH, model.max_mask_patch())
    optimizer = torch.optim.Adam(model.parameters(), args.lr, weight_decay=5e-7, betas=(0.95, 0.999))
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=args.lr_patience)

    config = C.config_dict(args)
    mlog = C.MetricsLog(args.exp_dir, main)
    if ck is not None:
        model.load_state_dict(ck["model"])
    step, epoch, ex = C.resume_or_start(ck, ckpt_path, args, config, optimizer, scheduler, info, mlog,
                                        {"batches_done": 0, "best": -math.inf, "best_step": 0, "result": [],
                                         "window": [0.0, 0.0], "window_n": 0})
    batches_done, best, best_step = ex["batches_done"], ex["best"], ex["best_step"]
    result = ex.get("result", [])

    net, ckpt, per_epoch = C.prepare_training(model, train_ds, args, info)
    prog = C.stage_progress("pretrain", args, info, per_epoch, step)
    skipped_total, t_start, clips_total = 0, time.perf_counter(), 0
    meter = C.Throughput()
    # Running sums of (loss, acc, nce, mse) since the last log row, and of (loss, acc) since the last
    # evaluation (result.csv), stay on the device: no host sync per step.
    running, running_n = torch.zeros(4, dtype=torch.float64, device=info.device), 0
    window = torch.tensor(ex.get("window", [0.0, 0.0]), dtype=torch.float64, device=info.device)
    window_n = ex.get("window_n", 0)
    last_val: dict = {}

    def save(ep: int, bdone: int, **kw) -> None:  # collective: every rank calls it
        extra = C.checkpoint_extra(info, batches_done=bdone, best=best, best_step=best_step, result=result,
                                   window=all_reduce_mean(window.tolist(), info), window_n=window_n)
        ckpt.save(model, optimizer, scheduler, step, ep, config, extra, **kw)

    net.train()
    while epoch < args.n_epochs:
        prog.set_epoch(epoch + 1, args.n_epochs)
        loader = C.make_loader(train_ds, args, info, train=True, epoch=epoch, batch_size=args.batch_size,
                               skip_batches=batches_done)
        for batch in loader:
            if batch["skipped"]:
                skipped_total += len(batch["skipped"])
            lr = warmup_lr(step, args.lr, args.warmup_steps)  # pretraining always warms up (the reference too)
            if lr is not None:
                for g in optimizer.param_groups:
                    g["lr"] = lr
            x = C.model_input(batch, frontend, info.device, noise=bool(args.noise))
            with C.autocast(args, info.device):
                loss, acc, nce, mse = run_task(net, x, args, args.mask_patch, cluster)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            batches_done += 1
            n = x.shape[0]
            meter.add(n * info.world)
            clips_total += n * info.world
            terms = torch.stack([loss, acc, nce, mse]).detach().double()
            running += terms
            running_n += 1
            window += terms[:2]
            window_n += 1
            prog.update(n * info.world, loss)
            saving = step % args.epoch_iter == 0 or (args.save_every and step % args.save_every == 0)
            if step % args.n_print_steps == 0 or saving:  # never checkpoint a diverged model
                C.check_finite(running, step)
            if step % args.n_print_steps == 0:
                row = {"split": "train", "step": step, "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                       "clips_per_s": meter.rate(), "skipped": skipped_total}
                keys = ("loss", "acc", "nce", "mse")
                row.update(zip(keys, all_reduce_mean((running / running_n).tolist(), info)))
                running, running_n = torch.zeros_like(running), 0
                meter.reset()
                pending_row = row
            else:
                pending_row = None
            if step % args.epoch_iter == 0:
                vloader = C.make_loader(val_ds, args, info, train=False, epoch=0, batch_size=args.batch_size * 2)
                last_val = validate(net, prog.wrap(vloader, len(vloader), "validating"), val_frontend, args, info,
                                    val_mask, cluster)
                lr_now = optimizer.param_groups[0]["lr"]
                result.append(result_row(args.task, all_reduce_mean((window / window_n).tolist(), info), last_val,
                                         lr_now))
                window, window_n = torch.zeros_like(window), 0
                metric = -last_val["mse"] if args.task == "pretrain_mpg" else last_val["acc"]
                scheduler.step(metric)
                improved = metric > best
                if improved:
                    best, best_step = metric, step
                # with --epoch-models, the reference's audio_model.<evaluation + 1>.pth
                save(epoch, batches_done, best=improved,
                     epoch_model=step // args.epoch_iter + 1 if args.epoch_models else None)
                if main:
                    C.write_result_csv(os.path.join(args.exp_dir, "result.csv"), result)
                mlog.write({"split": "val", "step": step, "epoch": epoch + 1, "lr": lr_now,
                            "mask_patch": val_mask, **last_val})
                mlog.export()
            elif args.save_every and step % args.save_every == 0:
                save(epoch, batches_done)
            if pending_row is not None:  # logged after the checkpoint: a logged step is a saved step
                mlog.write(pending_row)
        epoch += 1
        batches_done = 0
        C.check_finite(running, step)
        save(epoch, 0)
    prog.close()

    elapsed = time.perf_counter() - t_start
    summary = {"stage": "pretrain", "task": args.task, "steps": step, "epochs": args.n_epochs,
               "clips_seen_this_run": clips_total, "seconds": elapsed,
               "clips_per_s": clips_total / elapsed if elapsed > 0 else float("nan"),
               "best_val": best, "best_step": best_step, "last_val": last_val, "skipped_bad_audio": skipped_total,
               "exp_dir": args.exp_dir, "backends": C.backends.record()}
    if main:
        mlog.export()
        C.plot_curves(mlog, os.path.join(args.exp_dir, "curves.png"),
                      [("train", "loss"), ("train", "acc" if args.task != "pretrain_mpg" else "mse"), ("val", "acc"),
                       ("val", "mse"), ("train", "lr")])
        _mask_png(model, val_ds, val_frontend, args, info, cluster)
        C.write_json(os.path.join(args.exp_dir, "summary.json"), summary)
        C.print_summary("pretraining finished", {
            "steps / epochs": f"{step} / {args.n_epochs}",
            "throughput": f"{summary['clips_per_s']:.2f} clips/s ({clips_total} clips in {elapsed:.1f} s)",
            "best val " + ("-mse" if args.task == "pretrain_mpg" else "masked acc"): f"{best:.4f} at step {best_step}",
            "bad audio skipped": skipped_total,
            "checkpoints": os.path.join(args.exp_dir, "checkpoints") + " (last.pt, best.pt)",
            "reference-format models": os.path.join(args.exp_dir, "models"),
            "logs": "metrics.jsonl, train_log.csv, val_log.csv, result.csv, curves.png, mask_visualization.png",
        })
    del net, optimizer, scheduler
    shutdown(info)
    return summary


@torch.no_grad()
def _mask_png(model, ds, frontend, args: Namespace, info, cluster: bool) -> None:
    """mask_visualization.png from the first validation clip (task visualize_mask)."""
    item = ds[0]
    if "fbank" in item:
        x = item["fbank"][None].to(info.device)
    else:
        x = frontend(item["wave"][None].to(info.device), torch.tensor([item["wave"].shape[0]], device=info.device))
    model.eval()
    mask = min(args.mask_patch, model.max_mask_patch(cluster))
    pred, masked = model(x, "visualize_mask", cluster=cluster, mask_patch=mask)
    C.plot_mask(x[0].T, masked[0, 0], pred[0, 0], os.path.join(args.exp_dir, "mask_visualization.png"))
