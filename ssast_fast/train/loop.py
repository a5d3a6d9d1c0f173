"""The one training loop, shared by pretraining and fine-tuning.

:func:`train` runs (or resumes) a run: read the files it needs, join the process group, seed,
build data and model (:mod:`~ssast_fast.train.build`), settle the kernel backends, then epochs of
steps with warm-up, logging, periodic checkpoints (:mod:`~ssast_fast.train.state`), evaluations
that keep the best model, step the lr schedule and add a row to ``result.csv``
(:mod:`~ssast_fast.train.logs`), and at the end summary.json, plots and a printed summary.
What differs between the stages -- the model, optimizer and schedule, the step, the evaluation
and its cadence, the end-of-run extras -- is a :class:`~ssast_fast.train.stage.Stage`.
"""
from __future__ import annotations

import os
import time

import torch

from ssast_fast.train import backends
from ssast_fast.train.build import TaskModule, build_data, make_loader, model_input, steps_per_epoch
from ssast_fast.train.config import RunConfig
from ssast_fast.train.distributed import DistInfo, all_reduce_mean, init_distributed, shutdown, wrap_ddp
from ssast_fast.train.logs import MetricsLog, Throughput, plot_curves, print_summary, run_panels, write_json, \
    write_result_csv
from ssast_fast.train.progress import Progress
from ssast_fast.train.schedules import apply_warmup, step_scheduler
from ssast_fast.train.stage import Stage
from ssast_fast.train.state import Checkpointer, check_finite, checkpoint_extra, load_resume_checkpoint, \
    restore_training_state, seed_everything


def start_run(config: RunConfig) -> DistInfo:
    """A training run's first steps: the process group (:func:`init_distributed`), ``exp_dir``
    created on rank 0, every RNG seeded (``seed + rank``)."""
    info = init_distributed(config.device)
    if info.is_main:
        os.makedirs(config.exp_dir, exist_ok=True)
    seed_everything(config.seed, info.rank)
    return info


class Trainer:
    """The state of one run of :func:`train` (stages read ``model``, ``net``, ``info``, the data,
    ``prog``, ``best`` ...)."""

    def __init__(self, config: RunConfig, stage: Stage) -> None:
        config.validate()
        self.config, self.stage = config, stage
        ckpt_path, ck = load_resume_checkpoint(config)  # files are read before anything is written
        if ck is None:
            stage.read_files()
        self.info = info = start_run(config)
        self.labels = stage.labels()
        self.train_ds, self.val_ds, self.frontend, self.val_frontend = build_data(config, info, self.labels)
        self.model = stage.build_model(ck).to(info.device)
        self.optimizer = stage.optimizer(self.model)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scheduler = stage.scheduler(self.optimizer)
        self.config_json = config.to_json()
        self.mlog = MetricsLog(config.exp_dir, info.is_main)
        self.step, self.epoch, extra = 0, 0, {}
        if ck is None:
            if info.is_main:
                write_json(os.path.join(config.exp_dir, "config.json"), self.config_json)
        else:
            self.step, self.epoch, extra = restore_training_state(ck, self.optimizer, self.scheduler, info)
            self.mlog.truncate_after(self.step)
            if info.is_main:
                print(f"resumed from {ckpt_path}: step {self.step}, epoch {self.epoch + 1}, batch "
                      f"{extra['batches_done']}", flush=True)
        stage.restore(extra)
        self.batches_done = extra.get("batches_done", 0)
        self.best, self.best_at = extra.get("best", -float("inf")), extra.get(stage.best_key, 0)
        self.result = extra.get("result", [])
        sums_key, count_key = stage.window_keys
        # Sums of the step values since the last log row and (the first window_terms of them) since
        # the last evaluation stay on the device: no host sync per step.
        self.window = torch.tensor(extra.get(sums_key, [0.0] * stage.window_terms), dtype=torch.float64,
                                   device=info.device).reshape(-1)
        self.window_n = extra.get(count_key, 0)
        self.running, self.running_n = torch.zeros(len(stage.terms), dtype=torch.float64, device=info.device), 0

        backends.settle(self.model, config, info)  # kernel self-checks and measured choices, before tracing
        net = TaskModule(self.model)
        self.net = wrap_ddp(torch.compile(net) if config.compile else net, info)
        self.ckpt = Checkpointer(config.exp_dir, info.is_main)
        self.per_epoch = steps_per_epoch(self.train_ds, info, config.batch_size)
        if self.per_epoch == 0:
            raise ValueError(f"{config.data_train}: fewer clips than one batch ({config.batch_size} per process)")
        self.prog = Progress(stage.name, config.n_epochs * self.per_epoch, self.step,
                             enabled=info.is_main and config.progress, interval=config.progress_interval)
        self.skipped = self.clips = 0
        self.meter = Throughput()
        self.last: dict = {}

    def save(self, epoch: int, batches_done: int, **kw) -> None:
        """Checkpoint (collective: every rank calls it)."""
        sums_key, count_key = self.stage.window_keys
        sums = all_reduce_mean(self.window.tolist(), self.info)
        extra = checkpoint_extra(self.info, batches_done=batches_done, best=self.best,
                                 **{self.stage.best_key: self.best_at}, result=self.result, **self.stage.state(),
                                 **{sums_key: sums if len(sums) > 1 else sums[0], count_key: self.window_n})
        self.ckpt.save(self.model, self.optimizer, self.scheduler, self.step, epoch, self.config_json, extra, **kw)

    def evaluate(self, save_epoch: int, batches_done: int) -> None:
        """Validate, keep the best, step the schedule, checkpoint, log (collective)."""
        cfg, info = self.config, self.info
        window = all_reduce_mean((self.window / max(self.window_n, 1)).tolist(), info)
        lr = self.optimizer.param_groups[0]["lr"]
        ev = self.stage.evaluate(self, window, lr)
        self.last = ev.last
        self.result.append(ev.result)
        self.window, self.window_n = torch.zeros_like(self.window), 0
        step_scheduler(self.scheduler, ev.plateau)
        improved = ev.metric > self.best
        if improved:
            self.best, self.best_at = ev.metric, self.stage.best_position(self.step, self.epoch)
        self.save(save_epoch, batches_done, best=improved, epoch_model=self.stage.epoch_model(self.step, save_epoch))
        if info.is_main:
            write_result_csv(os.path.join(cfg.exp_dir, "result.csv"), self.result, self.stage.result_rows)
        self.mlog.write({"split": "val", "step": self.step, "epoch": self.epoch + 1, "lr": lr, **ev.row})
        self.mlog.export()
        self.stage.after_evaluation(self, ev)

    def train_row(self) -> dict:
        """The training log row of this step: means since the last row, over ranks."""
        means = all_reduce_mean((self.running / self.running_n).tolist(), self.info)
        groups = self.optimizer.param_groups
        values = {"split": "train", "step": self.step, "epoch": self.epoch + 1, "lr": groups[0]["lr"],
                  "head_lr": groups[-1]["lr"], "clips_per_s": self.meter.rate(), "skipped": self.skipped,
                  **dict(zip(self.stage.terms, means))}
        self.running, self.running_n = torch.zeros_like(self.running), 0
        self.meter.reset()
        return {k: values[k] for k in self.stage.train_columns}

    def fit(self) -> dict:
        cfg, info, stage = self.config, self.info, self.stage
        t_start = time.perf_counter()
        self.net.train()
        while self.epoch < cfg.n_epochs:
            self.prog.set_epoch(self.epoch + 1, cfg.n_epochs)
            loader = make_loader(self.train_ds, cfg, info, train=True, epoch=self.epoch, batch_size=cfg.batch_size,
                                 skip_batches=self.batches_done)
            for batch in loader:
                self.skipped += len(batch["skipped"])
                if stage.warmup:
                    apply_warmup(self.optimizer, self.base_lrs, self.step, cfg.warmup_steps)
                x = model_input(batch, self.frontend, info.device, noise=bool(cfg.noise))
                loss, terms = stage.step(self, x, batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.step += 1
                self.batches_done += 1
                n = x.shape[0] * info.world
                self.meter.add(n)
                self.clips += n
                self.prog.update(n, loss)
                terms = terms.detach().double()
                self.running += terms
                self.running_n += 1
                self.window += terms[:stage.window_terms]
                self.window_n += 1
                logging_now = self.step % cfg.n_print_steps == 0
                evaluating = stage.evaluation_due(self.step)
                saving = bool(cfg.save_every) and self.step % cfg.save_every == 0
                if logging_now or evaluating or saving:  # never checkpoint a diverged model
                    check_finite(self.running, self.step)
                row = self.train_row() if logging_now else None
                if evaluating:
                    self.evaluate(self.epoch, self.batches_done)
                elif saving:
                    self.save(self.epoch, self.batches_done)
                if row is not None:  # logged after the checkpoint: a logged step is a saved step
                    self.mlog.write(row)
            check_finite(self.running, self.step)
            if stage.evaluates_per_epoch:
                self.evaluate(self.epoch + 1, 0)
            else:
                self.save(self.epoch + 1, 0)
            self.epoch += 1
            self.batches_done = 0
        self.prog.close()
        return self.finish(time.perf_counter() - t_start)

    def finish(self, elapsed: float) -> dict:
        cfg, info, stage = self.config, self.info, self.stage
        summary = {"stage": stage.name, "task": cfg.task, "steps": self.step, "epochs": cfg.n_epochs,
                   "clips_seen_this_run": self.clips, "seconds": elapsed,
                   "clips_per_s": self.clips / elapsed if elapsed > 0 else float("nan"), **stage.summary(self),
                   "last_val": self.last, "skipped_bad_audio": self.skipped, "exp_dir": cfg.exp_dir,
                   "backends": backends.record()}
        stage.finish(self, summary)
        if info.is_main:
            self.mlog.export()
            plot_curves(os.path.join(cfg.exp_dir, "curves.png"), run_panels(self.mlog, stage.curves))
            stage.plots(self)
            write_json(os.path.join(cfg.exp_dir, "summary.json"), summary)
            print_summary(f"{stage.title} finished", {
                "steps / epochs": f"{self.step} / {cfg.n_epochs}",
                "throughput": f"{summary['clips_per_s']:.2f} clips/s ({self.clips} clips in {elapsed:.1f} s)",
                **stage.summary_lines(self, summary),
                "bad audio skipped": self.skipped,
                "checkpoints": os.path.join(cfg.exp_dir, "checkpoints") + " (last.pt, best.pt)",
                "reference-format models": os.path.join(cfg.exp_dir, "models"),
                "logs": "metrics.jsonl, train_log.csv, val_log.csv, result.csv, curves.png" + stage.logs,
            })
        self.net = self.optimizer = self.scheduler = None  # DDP and optimizer gone before the group is
        shutdown(info)
        return summary


def train(config: RunConfig, stage: Stage) -> dict:
    """Run (or resume) the training run ``config`` of ``stage`` -> its summary (summary.json)."""
    return Trainer(config, stage).fit()
