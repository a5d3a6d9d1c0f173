"""Supervised fine-tuning loop and evaluation (reference recipe, SPEC.md section 4).

Adam with two groups (encoder at lr, ``mlp_head`` at lr * head_lr), weight_decay 5e-7, betas
(0.95, 0.999); optional warm-up (both groups, every 50 of the first 1000 steps, to step/1000 of
their base lr); MultiStepLR with milestones ``range(lrscheduler_start, 1000, lrscheduler_step)``
and gamma ``lrscheduler_decay`` (or, with ``--adaptschedule True``, ReduceLROnPlateau on mAP),
stepped once per epoch after validation; loss BCEWithLogits (multi-hot targets) or CrossEntropy
on the target's argmax. Validation every epoch: sigmoid scores -> mAP, mean AUC, d-prime,
accuracy; the best model by ``--metrics`` is kept. As the reference, every epoch adds a row to
``result.csv`` (:func:`result_row`, with the cumulative ensemble of the epochs' scores) and may
write ``models/audio_model.<epoch>.pth``; ``--wa True`` averages epochs wa_start..wa_end after
training (:func:`weight_average`, ``wa_result.csv``).

The logged validation ``loss`` is the training loss on the logits; result.csv's validation loss
is the reference's (the loss on sigmoid outputs).
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

from ssast_fast.checkpoint import load_reference, load_training_checkpoint, save_reference
from ssast_fast.train import common as C
from ssast_fast.train.distributed import all_gather_objects, all_reduce_mean, shutdown
from ssast_fast.train.metrics import calculate_stats
from ssast_fast.train.options import check_training_args
from ssast_fast.train.pretrain import warmup_lr
from ssast_fast.train.progress import Progress

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
def predict(net, loader, frontend, args: Namespace, info) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sigmoid scores [N, C], targets [N, C] (dataset order, gathered over ranks) and the mean losses
    per clip: ``loss`` (the training loss on the logits) and ``loss_sigmoid`` (the same loss on the
    sigmoid outputs: the reference's validation loss)."""
    net.eval()
    crit = loss_fn(args.loss)
    idx, scores, targets, losses = [], [], [], []
    for batch in loader:
        x = C.model_input(batch, frontend, info.device, noise=False)
        with C.autocast(args, info.device):
            logits = net(x, args.task).float()
        label = batch["label"].to(info.device)
        prob = torch.sigmoid(logits)
        losses.append((float(crit(logits, label)) * x.shape[0], float(crit(prob, label)) * x.shape[0]))
        idx.append(batch["index"].numpy())
        scores.append(prob.cpu().numpy())
        targets.append(batch["label"].numpy())
    net.train()
    parts = all_gather_objects((idx, scores, targets, losses), info)
    seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    totals, count = np.zeros(2), 0
    for pi, ps, pt, pl in parts:
        for i, s, t in zip(pi, ps, pt):
            for k in range(len(i)):
                seen.setdefault(int(i[k]), (s[k], t[k]))  # DistributedSampler pads with repeats
        totals += np.sum(pl, axis=0) if pl else 0.0
        count += sum(len(i) for i in pi)
    order = sorted(seen)
    loss, loss_sigmoid = (totals / max(count, 1)).tolist()
    return (np.stack([seen[i][0] for i in order]), np.stack([seen[i][1] for i in order]),
            {"loss": loss, "loss_sigmoid": loss_sigmoid})


SUMMARY_KEYS = ("mAP", "mAUC", "d_prime", "acc", "loss")


def evaluate(net, ds, frontend, args: Namespace, info, progress: Progress | None = None) -> dict:
    """Metrics of ``net`` on dataset ``ds``: mAP, mAUC, d_prime, acc, mid_precision, mid_recall,
    loss, loss_sigmoid (+ per-class AP/AUC, and the scores and targets as ``_scores`` / ``_targets``)."""
    loader = C.make_loader(ds, args, info, train=False, epoch=0, batch_size=args.batch_size * 2)
    batches = progress.wrap(loader, len(loader), "validating") if progress is not None else loader
    scores, targets, losses = predict(net, batches, frontend, args, info)
    stats = calculate_stats(scores, targets)
    stats.update(losses)
    stats["_scores"], stats["_targets"] = scores, targets
    return stats


def result_row(stats: dict, cum: dict, metrics: str, train_loss: float, lr: float) -> list[float]:
    """A row of the reference's fine-tuning ``result.csv``: main metric (mAP or acc), mAUC,
    mid_precision, mid_recall, d_prime, training loss, validation loss (on sigmoid outputs),
    the main metric and mAUC of the cumulative ensemble (mean of the scores of epochs 1..this), lr."""
    return [stats[metrics], stats["mAUC"], stats["mid_precision"], stats["mid_recall"], stats["d_prime"],
            train_loss, stats["loss_sigmoid"], cum[metrics], cum["mAUC"], lr]


def make_scheduler(optimizer, args: Namespace):
    """ReduceLROnPlateau on validation mAP with ``--adaptschedule True``, else MultiStepLR from
    ``--lrscheduler_start`` every ``--lrscheduler_step`` epochs (as the reference)."""
    if args.adaptschedule:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=args.lr_patience)
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, list(range(args.lrscheduler_start, 1000, args.lrscheduler_step)), gamma=args.lrscheduler_decay)


def average_epoch_models(ckpt: C.Checkpointer, start: int, end: int) -> dict[str, torch.Tensor]:
    """Mean of ``models/audio_model.<start..end>.pth``: summed in epoch order, then divided by the
    count (the reference's order of operations)."""
    total: dict[str, torch.Tensor] = {}
    for e in range(start, end + 1):
        sd = load_reference(ckpt.epoch_model_path(e))
        total = sd if not total else {k: total[k] + sd[k] for k in total}
    return {k: v / float(end - start + 1) for k, v in total.items()}


def weight_average(model: nn.Module, ckpt: C.Checkpointer, args: Namespace, info) -> str:
    """``--wa True``: load the mean of the per-epoch models ``wa_start..wa_end`` into ``model``, write
    it as ``models/audio_model_wa.pth``, then (``--save_model False``) delete the files of epochs
    wa_start+1..wa_end. A rerun after those files are gone reuses ``audio_model_wa.pth``. -> its path."""
    path = os.path.join(ckpt.models, "audio_model_wa.pth")
    window = [ckpt.epoch_model_path(e) for e in range(args.wa_start, args.wa_end + 1)]
    sd = None
    if info.is_main:
        missing = [p for p in window if not os.path.exists(p)]
        if not missing:
            sd = average_epoch_models(ckpt, args.wa_start, args.wa_end)
        elif os.path.exists(path):
            sd = load_reference(path)
        else:
            raise ValueError(f"--wa True: the per-epoch models {', '.join(missing)} are missing")
    model.load_state_dict(all_gather_objects(sd, info)[0])  # rank 0's copy to every rank
    if info.is_main:
        save_reference(model, path)
        if args.save_model is False:
            for p in window[1:]:
                if os.path.exists(p):
                    os.remove(p)
    return path


def finetune(args: Namespace) -> dict:
    """Run (or resume) fine-tuning as configured by ``args`` -> summary dict."""
    check_training_args(args)
    ckpt_path, ck = C.load_resume_checkpoint(args)  # files are read before anything is written
    pretrained = C.load_weights(args.pretrained_mdl_path) if ck is None else None
    info = C.start_run(args)
    main = info.is_main
    labels = C.label_map(args)
    if len(labels) != args.n_class:
        raise ValueError(f"--label-csv lists {len(labels)} classes but --n_class is {args.n_class}")
    train_ds, val_ds, frontend, val_frontend = C.build_data(args, info, labels)

    if ck is not None:
        model = C.model_from_weights(ck["model"], args).to(info.device)
    else:
        model = C.build_finetune_model(args, pretrained).to(info.device)
    optimizer = torch.optim.Adam(param_groups(model, args.lr, args.head_lr), weight_decay=5e-7, betas=(0.95, 0.999))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    scheduler = make_scheduler(optimizer, args)
    crit = loss_fn(args.loss)
    config = C.config_dict(args)
    mlog = C.MetricsLog(args.exp_dir, main)
    step, epoch, ex = C.resume_or_start(ck, ckpt_path, args, config, optimizer, scheduler, info, mlog,
                                        {"batches_done": 0, "best": -math.inf, "best_epoch": 0, "result": [],
                                         "cum_scores": None, "epoch_loss": 0.0, "epoch_n": 0})
    batches_done, best, best_epoch = ex["batches_done"], ex["best"], ex["best_epoch"]
    result, cum_scores = ex.get("result", []), ex.get("cum_scores")

    net, ckpt, per_epoch = C.prepare_training(model, train_ds, args, info)
    prog = C.stage_progress("finetune", args, info, per_epoch, step)
    # training loss sums since the last log row and over the epoch (result.csv), on the device
    loss_sum, loss_n = 0.0, 0
    epoch_loss, epoch_n = torch.tensor(ex.get("epoch_loss", 0.0), dtype=torch.float64), ex.get("epoch_n", 0)

    def save(ep: int, bdone: int, **kw) -> None:  # collective: every rank calls it
        (mean_epoch_loss,) = all_reduce_mean([float(epoch_loss)], info)
        extra = C.checkpoint_extra(info, batches_done=bdone, best=best, best_epoch=best_epoch, result=result,
                                   cum_scores=cum_scores, epoch_loss=mean_epoch_loss, epoch_n=epoch_n)
        ckpt.save(model, optimizer, scheduler, step, ep, config, extra, **kw)

    skipped_total, clips_total, t_start = 0, 0, time.perf_counter()
    meter = C.Throughput()
    last_stats: dict = {}
    net.train()
    while epoch < args.n_epochs:
        prog.set_epoch(epoch + 1, args.n_epochs)
        loader = C.make_loader(train_ds, args, info, train=True, epoch=epoch, batch_size=args.batch_size,
                               skip_batches=batches_done)
        for batch in loader:
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
            prog.update(x.shape[0] * info.world, loss)
            loss_sum, loss_n = loss_sum + loss.detach().double(), loss_n + 1  # on the device: no sync
            epoch_loss, epoch_n = epoch_loss.to(loss.device) + loss.detach().double(), epoch_n + 1
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
            if args.save_every and step % args.save_every == 0:
                save(epoch, batches_done)
            if row is not None:
                mlog.write(row)
        # end of epoch: validate, keep the best, step the schedule
        C.check_finite(loss_sum, step)
        stats = evaluate(net, val_ds, val_frontend, args, info, prog)
        last_stats = {k: stats[k] for k in SUMMARY_KEYS}
        cum_scores = torch.from_numpy(stats["_scores"]).double() + (cum_scores if cum_scores is not None else 0.0)
        cum = calculate_stats((cum_scores / (epoch + 1)).numpy(), stats["_targets"])
        (train_loss,) = all_reduce_mean([float(epoch_loss) / max(epoch_n, 1)], info)
        lr_now = optimizer.param_groups[0]["lr"]
        result.append(result_row(stats, cum, args.metrics, train_loss, lr_now))
        metric = stats[args.metrics]
        if metric > best:
            best, best_epoch = metric, epoch + 1
        mlog.write({"split": "val", "step": step, "epoch": epoch + 1, "lr": lr_now, **last_stats})
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(stats["mAP"])  # on mAP whatever --metrics says, as the reference
        else:
            scheduler.step()
        epoch += 1
        batches_done = 0
        epoch_loss, epoch_n = torch.zeros((), dtype=torch.float64), 0
        keep = args.epoch_models or (args.wa and args.wa_start <= epoch <= args.wa_end)
        save(epoch, 0, best=best_epoch == epoch, epoch_model=epoch if keep else None)
        if main:
            C.write_result_csv(os.path.join(args.exp_dir, "result.csv"), result, args.n_epochs)
        mlog.export()
        if main:
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in last_stats.items())
                  + f" (best {args.metrics} {best:.4f} at epoch {best_epoch})", flush=True)
    prog.close()

    elapsed = time.perf_counter() - t_start
    summary = {"stage": "finetune", "task": args.task, "steps": step, "epochs": args.n_epochs,
               "clips_seen_this_run": clips_total, "seconds": elapsed,
               "clips_per_s": clips_total / elapsed if elapsed > 0 else float("nan"),
               f"best_val_{args.metrics}": best, "best_epoch": best_epoch, "last_val": last_stats,
               "skipped_bad_audio": skipped_total, "exp_dir": args.exp_dir, "backends": C.backends.record()}
    if args.wa:  # the reference: after training, before the evaluation set
        summary["wa_model"] = weight_average(model, ckpt, args, info)
        w = evaluate(net, val_ds, val_frontend, args, info, prog)
        summary["wa_val"] = {k: w[k] for k in SUMMARY_KEYS}
        if main:
            np.savetxt(os.path.join(args.exp_dir, "wa_result.csv"),
                       [w["mAP"], w["mAUC"], w["mid_precision"], w["mid_recall"], w["d_prime"]])
    if args.data_eval:  # the reference: select on the validation set, report on the evaluation set
        best_sd = load_training_checkpoint(os.path.join(args.exp_dir, "checkpoints", "best.pt"))["model"] \
            if main else None
        model.load_state_dict(all_gather_objects(best_sd, info)[0])  # rank 0's copy to every rank
        eval_ds = C.build_dataset(args, args.data_eval, False, labels)
        v = evaluate(net, val_ds, val_frontend, args, info)
        e = evaluate(net, eval_ds, val_frontend, args, info)
        summary["best_model_val"] = {k: v[k] for k in SUMMARY_KEYS}
        summary["best_model_eval"] = {k: e[k] for k in SUMMARY_KEYS}
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
        if "wa_val" in summary:
            lines[f"weight average {args.wa_start}-{args.wa_end}"] = ", ".join(
                f"{k} {x:.4f}" for k, x in summary["wa_val"].items())
        if "best_model_eval" in summary:
            lines["eval set (best model)"] = ", ".join(f"{k} {x:.4f}" for k, x in summary["best_model_eval"].items())
        lines.update({"bad audio skipped": skipped_total,
                      "checkpoints": os.path.join(args.exp_dir, "checkpoints") + " (last.pt, best.pt)",
                      "reference-format models": os.path.join(args.exp_dir, "models"),
                      "logs": "metrics.jsonl, train_log.csv, val_log.csv, result.csv, curves.png"})
        C.print_summary("fine-tuning finished", lines)
    del net, optimizer, scheduler
    shutdown(info)
    return summary
