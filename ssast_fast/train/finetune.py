"""Supervised fine-tuning loop and evaluation (reference recipe, SPEC.md section 4).

Adam with two groups (encoder at lr, ``mlp_head`` at lr * head_lr), weight_decay 5e-7, betas
(0.95, 0.999); optional warm-up (both groups, every 50 of the first 1000 steps, to step/1000 of
their base lr); MultiStepLR with milestones ``range(lrscheduler_start, 1000, lrscheduler_step)``
and gamma ``lrscheduler_decay``, stepped once per epoch after validation; loss BCEWithLogits
(multi-hot targets) or CrossEntropy on the target's argmax. Validation every epoch: sigmoid
scores -> mAP, mean AUC, d-prime, accuracy; the best model by ``--metrics`` is kept.

Deviations: the reference computes the validation loss on sigmoid outputs; here it is the
training loss on logits. The reference's cumulative-ensemble and weight-averaging extras are not
implemented.
"""
from __future__ import annotations

import logging
import math
import os
import time
from argparse import Namespace

import numpy as np
import torch
from torch import nn

from ssast_fast.checkpoint import load_training_checkpoint
from ssast_fast.train import common as C
from ssast_fast.train.distributed import all_gather_objects, all_reduce_mean, shutdown
from ssast_fast.train.metrics import calculate_stats
from ssast_fast.train.pretrain import warmup_lr

log = logging.getLogger("ssast_fast.train")
HEAD_PARAMS = ("mlp_head.",)


def loss_fn(kind: str):
    """BCE (multi-label, soft targets allowed) or CE (targets -> argmax class)."""
    if kind == "BCE":
        return nn.BCEWithLogitsLoss()
    ce = nn.CrossEntropyLoss()
    return lambda logits, target: ce(logits, target.argmax(dim=1))


def param_groups(model: nn.Module, lr: float, head_lr: float) -> list[dict]:
    """[encoder group at lr, mlp_head group at lr * head_lr]."""
    head = [p for n, p in model.named_parameters() if n.startswith(HEAD_PARAMS)]
    base = [p for n, p in model.named_parameters() if not n.startswith(HEAD_PARAMS)]
    return [{"params": base, "lr": lr}, {"params": head, "lr": lr * head_lr}]


@torch.no_grad()
def predict(net, loader, frontend, args: Namespace, info) -> tuple[np.ndarray, np.ndarray, float]:
    """Sigmoid scores [N, C], targets [N, C] (dataset order, gathered over ranks) and the mean loss."""
    net.eval()
    crit = loss_fn(args.loss)
    idx, scores, targets, losses = [], [], [], []
    for batch in loader:
        x = C.model_input(batch, frontend, info.device, noise=False)
        with C.autocast(args, info.device):
            logits = net(x, args.task).float()
        label = batch["label"].to(info.device)
        losses.append(float(crit(logits, label)) * x.shape[0])
        idx.append(batch["index"].numpy())
        scores.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(batch["label"].numpy())
    net.train()
    parts = all_gather_objects((idx, scores, targets, losses), info)
    seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    total_loss, count = 0.0, 0
    for pi, ps, pt, pl in parts:
        for i, s, t in zip(pi, ps, pt):
            for k in range(len(i)):
                seen.setdefault(int(i[k]), (s[k], t[k]))  # DistributedSampler pads with repeats
        total_loss += sum(pl)
        count += sum(len(i) for i in pi)
    order = sorted(seen)
    return (np.stack([seen[i][0] for i in order]), np.stack([seen[i][1] for i in order]),
            total_loss / max(count, 1))


def evaluate(net, ds, frontend, args: Namespace, info) -> dict:
    """Metrics of ``net`` on dataset ``ds``: mAP, mAUC, d_prime, acc, loss (+ per-class AP/AUC)."""
    loader = C.make_loader(ds, args, info, train=False, epoch=0, batch_size=args.batch_size * 2)
    scores, targets, loss = predict(net, loader, frontend, args, info)
    stats = calculate_stats(scores, targets)
    stats["loss"] = loss
    stats["_scores"], stats["_targets"] = scores, targets
    return stats


def finetune(args: Namespace) -> dict:
    """Run (or resume) fine-tuning as configured by ``args`` -> summary dict."""
    info = C.start_run(args)
    main = info.is_main
    labels = C.label_map(args)
    if len(labels) != args.n_class:
        raise ValueError(f"--label-csv lists {len(labels)} classes but --n_class is {args.n_class}")
    train_ds, val_ds, frontend, val_frontend = C.build_data(args, info, labels)

    ckpt_path, ck = C.load_resume_checkpoint(args)
    if ck is not None:
        model = C.model_from_weights(ck["model"], args).to(info.device)
    else:
        model = C.build_finetune_model(args, args.pretrained_mdl_path).to(info.device)
    optimizer = torch.optim.Adam(param_groups(model, args.lr, args.head_lr), weight_decay=5e-7, betas=(0.95, 0.999))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, list(range(args.lrscheduler_start, 1000, args.lrscheduler_step)), gamma=args.lrscheduler_decay)
    crit = loss_fn(args.loss)
    config = C.config_dict(args)
    mlog = C.MetricsLog(args.exp_dir, main)
    step, epoch, ex = C.resume_or_start(ck, ckpt_path, args, config, optimizer, scheduler, info, mlog,
                                        {"batches_done": 0, "best": -math.inf, "best_epoch": 0})
    batches_done, best, best_epoch = ex["batches_done"], ex["best"], ex["best_epoch"]

    net, ckpt, per_epoch = C.prepare_training(model, train_ds, args, info)

    def save(which: str, ep: int, bdone: int) -> None:
        extra = C.checkpoint_extra(info, batches_done=bdone, best=best, best_epoch=best_epoch)
        ckpt.save(which, model, optimizer, scheduler, step, ep, config, extra)

    skipped_total, clips_total, t_start = 0, 0, time.perf_counter()
    meter = C.Throughput()
    loss_sum, loss_n, last_stats = 0.0, 0, {}
    net.train()
    while epoch < args.n_epochs:
        bar = C.epoch_batches(train_ds, args, info, epoch=epoch, batches_done=batches_done,
                              per_epoch=per_epoch, stage="finetune")
        for batch in bar:
            skipped_total += len(batch["skipped"])
            if args.warmup:
                for g, base in zip(optimizer.param_groups, base_lrs):
                    lr = warmup_lr(step, base, args.warmup_steps)
                    if lr is not None:
                        g["lr"] = lr
            x = C.model_input(batch, frontend, info.device, noise=bool(args.noise))
            label = batch["label"].to(info.device, non_blocking=True)
            with C.autocast(args, info.device):
                logits = net(x, args.task)
            loss = crit(logits.float(), label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            batches_done += 1
            clips_total += x.shape[0] * info.world
            meter.add(x.shape[0] * info.world)
            loss_sum, loss_n = loss_sum + loss.detach().double(), loss_n + 1  # on the device: no sync
            if step % args.n_print_steps == 0 or (args.save_every and step % args.save_every == 0):
                C.check_finite(loss_sum, step)  # never checkpoint a diverged model
            row = None
            if step % args.n_print_steps == 0:
                (mean_loss,) = all_reduce_mean([float(loss_sum) / loss_n], info)  # over ranks: the global batch
                row = {"split": "train", "step": step, "epoch": epoch + 1, "loss": mean_loss,
                       "lr": optimizer.param_groups[0]["lr"], "head_lr": optimizer.param_groups[1]["lr"],
                       "clips_per_s": meter.rate(), "skipped": skipped_total}
                loss_sum, loss_n = 0.0, 0
                meter.reset()
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{row['loss']:.4f}", clips_s=f"{row['clips_per_s']:.1f}")
            if args.save_every and step % args.save_every == 0:
                save("last", epoch, batches_done)
            if row is not None:
                mlog.write(row)
        # end of epoch: validate, keep the best, step the schedule
        C.check_finite(loss_sum, step)
        stats = evaluate(net, val_ds, val_frontend, args, info)
        last_stats = {k: stats[k] for k in ("mAP", "mAUC", "d_prime", "acc", "loss")}
        metric = stats[args.metrics]
        if metric > best:
            best, best_epoch = metric, epoch + 1
        mlog.write({"split": "val", "step": step, "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                    **last_stats})
        scheduler.step()
        epoch += 1
        batches_done = 0
        if best_epoch == epoch:
            save("best", epoch, 0)
        save("last", epoch, 0)
        mlog.export()
        if main:
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in last_stats.items())
                  + f" (best {args.metrics} {best:.4f} at epoch {best_epoch})", flush=True)

    elapsed = time.perf_counter() - t_start
    summary = {"stage": "finetune", "task": args.task, "steps": step, "epochs": args.n_epochs,
               "clips_seen_this_run": clips_total, "seconds": elapsed,
               "clips_per_s": clips_total / elapsed if elapsed > 0 else float("nan"),
               f"best_val_{args.metrics}": best, "best_epoch": best_epoch, "last_val": last_stats,
               "skipped_bad_audio": skipped_total, "exp_dir": args.exp_dir, "backends": C.backends.record()}
    if args.data_eval:  # the reference: select on the validation set, report on the evaluation set
        best_sd = load_training_checkpoint(os.path.join(args.exp_dir, "checkpoints", "best.pt"))["model"] \
            if main else None
        model.load_state_dict(all_gather_objects(best_sd, info)[0])  # rank 0's copy to every rank
        eval_ds = C.build_dataset(args, args.data_eval, False, labels)
        v = evaluate(net, val_ds, val_frontend, args, info)
        e = evaluate(net, eval_ds, val_frontend, args, info)
        summary["best_model_val"] = {k: v[k] for k in ("mAP", "mAUC", "d_prime", "acc", "loss")}
        summary["best_model_eval"] = {k: e[k] for k in ("mAP", "mAUC", "d_prime", "acc", "loss")}
        if main:
            np.savetxt(os.path.join(args.exp_dir, "eval_result.csv"), [v["acc"], v["mAUC"], e["acc"], e["mAUC"]])
    if main:
        mlog.export()
        C.plot_curves(mlog, os.path.join(args.exp_dir, "curves.png"),
                      [("train", "loss"), ("val", "loss"), ("val", args.metrics), ("val", "mAUC"), ("train", "lr")])
        C.write_json(os.path.join(args.exp_dir, "summary.json"), summary)
        lines = {
            "steps / epochs": f"{step} / {args.n_epochs}",
            "throughput": f"{summary['clips_per_s']:.2f} clips/s ({clips_total} clips in {elapsed:.1f} s)",
            f"best val {args.metrics}": f"{best:.4f} at epoch {best_epoch}",
            "last val": ", ".join(f"{k} {x:.4f}" for k, x in last_stats.items()),
        }
        if "best_model_eval" in summary:
            lines["eval set (best model)"] = ", ".join(f"{k} {x:.4f}" for k, x in summary["best_model_eval"].items())
        lines.update({"bad audio skipped": skipped_total,
                      "checkpoints": os.path.join(args.exp_dir, "checkpoints") + " (last.pt, best.pt)",
                      "reference-format models": os.path.join(args.exp_dir, "models"),
                      "logs": "metrics.jsonl, train_log.csv, val_log.csv, curves.png"})
        C.print_summary("fine-tuning finished", lines)
    del net, optimizer, scheduler
    shutdown(info)
    return summary
