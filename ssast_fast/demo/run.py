"""``ssast-fast demo``: build the keyword corpus, pretrain a tiny SSAST on its unlabeled split,
fine-tune it on the few labeled clips, fine-tune the same architecture from scratch with the same
budget, and compare both on the test split.

Every stage runs the project's own pipeline (``ssast_fast.train.pretrain.pretrain`` and
``ssast_fast.train.finetune.finetune`` with the configs :func:`pretrain_config` / :func:`finetune_config` build):
waveforms from the reference-format JSON, fbank through ``FrontEnd`` in the step, fast masks,
one shared mask for both heads (``--shared-mask``), batched heads, SDPA attention.
"Scratch" fine-tunes from the untrained initial weights of the same pretraining model (same
seed), saved in the reference format, so both arms share architecture, init and recipe.

Outputs in ``--out``: ``corpus/`` (cached), ``seed<S>/{pretrain,finetune_pretrained,
finetune_scratch}/`` (each the pipeline's logs, checkpoints and plots), ``seed<S>/results.json``,
``demo_curves.png``, ``mask_predictions.png``, ``results.json`` and ``results.md`` (the table).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from ssast_fast.checkpoint import load_training_checkpoint, save_reference
from ssast_fast.data import load_audio
from ssast_fast.demo.corpus import CorpusConfig, EspeakMissing, build_corpus
from ssast_fast.train.build import build_frontend, build_pretrain_model, model_from_weights
from ssast_fast.train.config import FinetuneConfig, PretrainConfig
from ssast_fast.train.finetune import finetune
from ssast_fast.train.logs import MetricsLog, plot_curves, plot_mask
from ssast_fast.train.pretrain import pretrain
from ssast_fast.train.state import seed_everything


def default_precision() -> str:
    """bf16 where the CPU has bf16 instructions (AVX512-BF16; AMX-BF16 CPUs have them too), else fp32.
    Measured on 3 seeds: pretrained still beats scratch in bf16 (docs/cpu_bf16.md)."""
    try:
        flags = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split()
    except (OSError, StopIteration):
        return "fp32"
    return "bf16" if "avx512_bf16" in flags else "fp32"


@dataclass(frozen=True)
class DemoConfig:
    """Model, input and budgets of one demo size."""

    corpus: CorpusConfig
    num_mel_bins: int = 64
    target_length: int = 96           # 1 s at 10 ms hops = 98 frames
    fshape: int = 64                  # frame patches: all 64 bins x 4 frames (SSAST-Frame-like) -> 24 patches
    tshape: int = 4
    model_size: str = "tiny"
    mask_patch: int = 12
    pretrain_epochs: int = 30         # 2250 steps: ~7.5 min at ~160 clips/s on 2 idle cores
    pretrain_batch: int = 32
    pretrain_lr: float = 5e-4
    pretrain_warmup: int = 40
    finetune_epochs: int = 8
    finetune_repeat: int = 2          # one fine-tuning "epoch" = this many passes over the labeled clips
    finetune_batch: int = 16
    finetune_lr: float = 1e-4
    head_lr: float = 10.0
    freqm: int = 8
    timem: int = 16
    precision: str = field(default_factory=default_precision)  # --precision of every stage


PRESETS = {
    "full": DemoConfig(corpus=CorpusConfig()),
    "quick": DemoConfig(corpus=CorpusConfig(n_pretrain=480, train_per_class=8, val_per_class=4, test_per_class=10),
                        pretrain_epochs=2, finetune_epochs=4, finetune_repeat=2, pretrain_warmup=10),
    # only for the test suite: the whole pipeline in well under a minute
    "smoke": DemoConfig(corpus=CorpusConfig(n_pretrain=64, train_per_class=2, val_per_class=1, test_per_class=2),
                        pretrain_epochs=1, pretrain_batch=16, finetune_epochs=2, finetune_repeat=1, finetune_batch=12,
                        pretrain_warmup=2),
}


def _shared(cfg: DemoConfig, corpus_dir: str, stats: dict, seed: int, progress: bool) -> dict:
    """The settings every stage shares: model, input, validation split, runtime."""
    return dict(model_size=cfg.model_size, fshape=cfg.fshape, tshape=cfg.tshape, target_length=cfg.target_length,
                num_mel_bins=cfg.num_mel_bins, dataset_mean=stats["mean"], dataset_std=stats["std"],
                attn_backend="sdpa", precision=cfg.precision, seed=seed, num_workers=0, progress=progress,
                data_val=os.path.join(corpus_dir, "val.json"))


def pretrain_config(cfg: DemoConfig, corpus_dir: str, stats: dict, seed: int, exp_dir: str,
                    progress: bool) -> PretrainConfig:
    """pretrain_joint on the unlabeled split: fast masks, one shared mask for both heads, a
    validation (and checkpoint) every epoch."""
    n = int(json.load(open(os.path.join(corpus_dir, "manifest.json")))["counts"]["pretrain"])
    return PretrainConfig(data_train=os.path.join(corpus_dir, "pretrain.json"), exp_dir=exp_dir,
                          task="pretrain_joint", mask_mode="fast", shared_mask=True, mask_patch=cfg.mask_patch,
                          batch_size=cfg.pretrain_batch, lr=cfg.pretrain_lr, n_epochs=cfg.pretrain_epochs,
                          warmup_steps=cfg.pretrain_warmup, epoch_iter=max(1, n // cfg.pretrain_batch),
                          lr_patience=2, n_print_steps=5, **_shared(cfg, corpus_dir, stats, seed, progress))


def repeated_train_json(corpus_dir: str, repeat: int, out_dir: str) -> str:
    """The labeled split listed ``repeat`` times (absolute paths): fewer, longer fine-tuning epochs, so
    validation and checkpoints do not dominate on a few dozen clips. No label is added."""
    src = os.path.join(corpus_dir, "train.json")
    if repeat <= 1:
        return src
    entries = json.load(open(src))["data"]
    data = [dict(e, wav=os.path.abspath(os.path.join(corpus_dir, e["wav"]))) for _ in range(repeat) for e in entries]
    path = os.path.join(out_dir, f"train_x{repeat}.json")
    with open(path, "w") as f:
        json.dump({"data": data}, f, indent=1)
    return path


def finetune_config(cfg: DemoConfig, corpus_dir: str, stats: dict, seed: int, exp_dir: str, init: str,
                    progress: bool, train_json: str | None = None) -> FinetuneConfig:
    """ft_avgtok on the labeled split from ``init``, the test split scored with the best model."""
    e = cfg.finetune_epochs
    return FinetuneConfig(data_train=train_json or os.path.join(corpus_dir, "train.json"),
                          data_eval=os.path.join(corpus_dir, "test.json"),
                          label_csv=os.path.join(corpus_dir, "labels.csv"), n_class=len(cfg.corpus.keywords),
                          exp_dir=exp_dir, pretrained_mdl_path=init, task="ft_avgtok", fstride=cfg.fshape,
                          tstride=cfg.tshape, batch_size=cfg.finetune_batch, lr=cfg.finetune_lr, head_lr=cfg.head_lr,
                          n_epochs=e, warmup=False, lrscheduler_start=max(1, e // 2), lrscheduler_step=1,
                          lrscheduler_decay=0.7, loss="CE", metrics="acc", freqm=cfg.freqm, timem=cfg.timem,
                          n_print_steps=2, **_shared(cfg, corpus_dir, stats, seed, progress))


def _scratch_init(config: PretrainConfig, path: str) -> None:
    """The untrained pretraining model of this seed (the pretraining stage's own initial weights)."""
    seed_everything(config.seed)
    save_reference(build_pretrain_model(config), path)


def run_seed(cfg: DemoConfig, corpus_dir: str, stats: dict, seed: int, out: str, progress: bool, log=print) -> dict:
    os.makedirs(out, exist_ok=True)
    times = {}
    pa = pretrain_config(cfg, corpus_dir, stats, seed, os.path.join(out, "pretrain"), progress)
    init = os.path.join(out, "init_untrained.pth")
    _scratch_init(pa, init)

    log(f"[seed {seed}] pretraining (unlabeled split) ...")
    t = time.perf_counter()
    pre = pretrain(pa)
    times["pretrain"] = time.perf_counter() - t
    pre_ckpt = os.path.join(out, "pretrain", "checkpoints", "last.pt")

    res = {}
    train_json = repeated_train_json(corpus_dir, cfg.finetune_repeat, out)
    for arm, src in (("pretrained", pre_ckpt), ("scratch", init)):
        log(f"[seed {seed}] fine-tuning from {arm} weights (labeled split) ...")
        fa = finetune_config(cfg, corpus_dir, stats, seed, os.path.join(out, f"finetune_{arm}"), src, progress,
                             train_json)
        t = time.perf_counter()
        s = finetune(fa)
        times[f"finetune_{arm}"] = time.perf_counter() - t
        res[arm] = {"test_acc": s["best_model_eval"]["acc"], "test_mAP": s["best_model_eval"]["mAP"],
                    "val_acc": s["best_model_val"]["acc"], "best_epoch": s["best_epoch"],
                    "clips_per_s": s["clips_per_s"]}
    result = {"seed": seed, "pretrain": {"clips_per_s": pre["clips_per_s"], "steps": pre["steps"],
                                         "clips": pre["clips_seen_this_run"], "val_masked_acc": pre["last_val"].get("acc")},
              "finetune": res, "seconds": times}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


# ---- report --------------------------------------------------------------------------------------
def _fmt(xs: list[float], pct: bool = False, digits: int = 1) -> str:
    k = 100.0 if pct else 1.0
    if len(xs) == 1:
        return f"{k * xs[0]:.{digits}f}"
    return f"{k * statistics.mean(xs):.{digits}f} ± {k * statistics.stdev(xs):.{digits}f}"


def table(results: list[dict], corpus_s: float | None) -> str:
    seeds = ", ".join(str(r["seed"]) for r in results)
    rows = [("test accuracy, pretrained + fine-tuned (%)", _fmt([r["finetune"]["pretrained"]["test_acc"] for r in results], True)),
            ("test accuracy, fine-tuned from scratch (%)", _fmt([r["finetune"]["scratch"]["test_acc"] for r in results], True)),
            ("difference, pretrained - scratch (points)", _fmt([r["finetune"]["pretrained"]["test_acc"]
                                                               - r["finetune"]["scratch"]["test_acc"] for r in results], True)),
            ("pretraining masked-patch accuracy, val (%)", _fmt([r["pretrain"]["val_masked_acc"] for r in results], True)),
            ("pretraining throughput (clips/s)", _fmt([r["pretrain"]["clips_per_s"] for r in results])),
            ("wall time: pretraining (s)", _fmt([r["seconds"]["pretrain"] for r in results], digits=0)),
            ("wall time: fine-tuning, pretrained (s)", _fmt([r["seconds"]["finetune_pretrained"] for r in results], digits=0)),
            ("wall time: fine-tuning, scratch (s)", _fmt([r["seconds"]["finetune_scratch"] for r in results], digits=0))]
    if corpus_s is not None:
        rows.append(("wall time: corpus (s; 0 = cached)", f"{corpus_s:.0f}"))
    head = f"| seeds {seeds} | value{' (mean ± std)' if len(results) > 1 else ''} |\n|---|---|\n"
    return head + "\n".join(f"| {a} | {b} |" for a, b in rows) + "\n"


def demo_curves(seed_dir: str, path: str) -> None:
    """demo_curves.png: pretraining loss and masked accuracy, then both fine-tuning arms' training
    loss and validation accuracy."""
    def log(stage: str) -> MetricsLog:
        return MetricsLog(os.path.join(seed_dir, stage))

    arms = {arm: log(f"finetune_{arm}") for arm in ("pretrained", "scratch")}
    plot_curves(path, [
        ("pretraining (unlabeled): loss (nce + 10 mse)", "step", {None: log("pretrain").series("train", "loss")}),
        ("pretraining: masked-patch accuracy", "step", {None: log("pretrain").series("train", "acc")}),
        ("fine-tuning: train loss", "step", {arm: m.series("train", "loss") for arm, m in arms.items()}),
        ("fine-tuning: validation accuracy", "epoch", {arm: m.series("val", "acc", x="epoch") for arm, m in arms.items()}),
    ], width=3.2, dpi=80)


def mask_predictions(seed_dir: str, corpus_dir: str, config: PretrainConfig, path: str) -> None:
    """mask_predictions.png: the first test clip, masked by the pretrained model, with its predictions."""
    sd = load_training_checkpoint(os.path.join(seed_dir, "pretrain", "checkpoints", "last.pt"))["model"]
    model = model_from_weights(sd, config, config.mask_mode)
    entry = json.load(open(os.path.join(corpus_dir, "test.json")))["data"][0]
    wave = load_audio(os.path.join(corpus_dir, entry["wav"]), 16000)
    with torch.no_grad():
        x = build_frontend(config, False)(wave[None], torch.tensor([wave.shape[0]]))
    torch.manual_seed(config.seed)
    plot_mask(model, x, config.mask_patch, path)


def run_demo(out: str, seeds: list[int], mode: str = "full", *, overrides: dict | None = None,
             n_pretrain: int | None = None, threads: int = 0, progress: bool = True) -> int:
    """The demo in folder ``out`` for each of ``seeds``: ``mode`` names a preset of :data:`PRESETS`,
    ``overrides`` replace :class:`DemoConfig` fields, ``n_pretrain`` the unlabeled clip count;
    ``threads``: torch threads (0: torch's default) -> exit status (2: espeak-ng missing)."""
    cfg = replace(PRESETS[mode], **(overrides or {}))
    if n_pretrain is not None:
        cfg = replace(cfg, corpus=replace(cfg.corpus, n_pretrain=n_pretrain))
    if threads:
        torch.set_num_threads(threads)
    os.makedirs(out, exist_ok=True)
    t_all = time.perf_counter()
    corpus_dir = os.path.join(out, "corpus")
    t = time.perf_counter()
    print(f"corpus: {corpus_dir} (reused when its config matches; otherwise espeak-ng builds "
          f"{cfg.corpus.n_pretrain} unlabeled and {len(cfg.corpus.keywords)} x "
          f"{cfg.corpus.train_per_class + cfg.corpus.val_per_class + cfg.corpus.test_per_class} labeled clips, "
          "about a minute for the full demo) ...", flush=True)
    try:
        man = build_corpus(corpus_dir, cfg.corpus, num_mel_bins=cfg.num_mel_bins, target_length=cfg.target_length)
    except EspeakMissing as exc:
        print(f"ssast-fast demo: {exc}")
        return 2
    corpus_s = 0.0 if man["reused"] else time.perf_counter() - t
    stats = man["stats"]
    results = []
    for s in seeds:
        results.append(run_seed(cfg, corpus_dir, stats, s, os.path.join(out, f"seed{s}"), progress))
    s0 = os.path.join(out, f"seed{seeds[0]}")
    demo_curves(s0, os.path.join(out, "demo_curves.png"))
    pa = pretrain_config(cfg, corpus_dir, stats, seeds[0], os.path.join(s0, "pretrain"), False)
    mask_predictions(s0, corpus_dir, pa, os.path.join(out, "mask_predictions.png"))
    total = time.perf_counter() - t_all
    md = table(results, corpus_s)
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        cpu = platform.processor()
    info = {"mode": mode, "seeds": seeds,
            "config": asdict(cfg), "corpus": {"dir": corpus_dir, "counts": man["counts"], "reused": man["reused"],
                                              "config_hash": man["config_hash"], "seconds": corpus_s},
            "machine": {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__},
            "date": time.strftime("%Y-%m-%d %H:%M"), "total_seconds": total, "results": results}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(info, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(f"Demo ({info['mode']}), {info['date']}, {cpu}, {torch.get_num_threads()} threads; corpus "
                f"{man['counts']}\n\n" + md)
    print(f"\n==== demo ({info['mode']}, corpus {man['counts']}{', cached' if man['reused'] else ''}) ====")
    print(md)
    print(f"total {total:.0f} s; outputs in {out}: results.md, results.json, demo_curves.png, mask_predictions.png, "
          f"seed*/ (logs, checkpoints, plots)", flush=True)
    return 0
