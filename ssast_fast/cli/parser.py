"""Command line: ``ssast-fast <command>`` (also ``python -m ssast_fast``).

Commands: ``smoke`` (tiny self-check), ``run`` (drop-in for the reference's run.py), ``pretrain``, ``finetune``,
``eval``, ``embed``, ``demo`` (main job). The training commands take every run.py argument
(``ssast_fast.train.options``); ``--preset`` fills a reference recipe for ``pretrain`` / ``finetune``.
"""
from __future__ import annotations

import argparse
import os
import sys
import random
import tempfile
import time

import torch

from ssast_fast.export.cli import add_export_command


def _smoke(args: argparse.Namespace) -> int:
    """Tiny end-to-end check: one joint pretraining step, then a fine-tuning forward."""
    from ssast_fast import ASTModel, _ext
    from ssast_fast.checkpoint import save_reference

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    shape = dict(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=args.frames)
    model = ASTModel(model_size="tiny", **shape)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-7, betas=(0.95, 0.999))
    x = torch.randn(args.batch, args.frames, 128)
    t0 = time.perf_counter()
    acc, nce, mse = model.pretrain_joint(x, mask_patch=args.mask_patch)
    loss = nce + 10 * mse
    loss.backward()
    opt.step()
    t1 = time.perf_counter()
    print(f"extension: {'compiled' if _ext.available() else 'pure Python'}")
    print(f"pretrain joint step (tiny, B={args.batch}, {args.frames} frames, mask {args.mask_patch}): "
          f"acc={acc.item():.4f} nce={nce.item():.4f} mse={mse.item():.4f} loss={loss.item():.4f} "
          f"({t1 - t0:.2f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "pretrained.pth")  # reference (DataParallel) format
        save_reference(model, ckpt)
        ft = ASTModel(label_dim=10, fshape=16, tshape=16, fstride=10, tstride=10, input_fdim=128,
                      input_tdim=args.frames // 2, model_size="tiny", pretrain_stage=False,
                      load_pretrained_mdl_path=ckpt)
    with torch.no_grad():
        logits = ft(torch.randn(args.batch, args.frames // 2, 128), "ft_avgtok")
    print(f"fine-tune forward (stride 10, {args.frames // 2} frames): logits {tuple(logits.shape)}, "
          f"mean={logits.mean().item():.4f}")
    return 0


# ---- training commands --------------------------------------------------------------------------
# Named recipes (SPEC.md section 4 and the reference's run scripts); explicit flags override them.
AS_STATS = dict(dataset_mean=-4.2677393, dataset_std=4.5689974)
PRESETS: dict[str, dict] = {
    "as-patch-pretrain": dict(task="pretrain_joint", fshape=16, tshape=16, fstride=16, tstride=16,
                              target_length=1024, num_mel_bins=128, model_size="base", batch_size=24, lr=1e-4,
                              lr_patience=2, n_epochs=10, mask_patch=400, epoch_iter=4000, freqm=0, timem=0,
                              mixup=0.0, **AS_STATS),
    "as-frame-pretrain": dict(task="pretrain_joint", fshape=128, tshape=2, fstride=128, tstride=2,
                              target_length=1024, num_mel_bins=128, model_size="base", batch_size=24, lr=1e-4,
                              lr_patience=2, n_epochs=10, mask_patch=400, epoch_iter=4000, freqm=0, timem=0,
                              mixup=0.0, **AS_STATS),
    "esc50-finetune": dict(task="ft_avgtok", n_class=50, dataset_mean=-6.6268077, dataset_std=5.358466,
                           target_length=512, num_mel_bins=128, noise=True, lr=1e-4, freqm=24, timem=96, mixup=0.0,
                           n_epochs=50, batch_size=48, fshape=16, tshape=16, fstride=10, tstride=10,
                           model_size="base", head_lr=1.0, warmup=False, lrscheduler_start=6, lrscheduler_step=1,
                           lrscheduler_decay=0.85, loss="CE", metrics="acc"),
    "speechcommands-finetune": dict(task="ft_avgtok", n_class=35, dataset_mean=-6.845978, dataset_std=5.5654526,
                                    target_length=128, num_mel_bins=128, noise=True, lr=2.5e-4, freqm=48, timem=48,
                                    mixup=0.6, n_epochs=30, batch_size=128, fshape=128, tshape=2, fstride=128,
                                    tstride=1, model_size="base", head_lr=1.0, warmup=True, lrscheduler_start=5,
                                    lrscheduler_step=1, lrscheduler_decay=0.85, loss="BCE", metrics="acc"),
}
PRETRAIN_PRESETS = ("as-patch-pretrain", "as-frame-pretrain")


def _preset_defaults(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    p.add_argument("--preset", choices=list(names), default=None,
                   help="fill the reference recipe's settings (explicit flags still win): "
                        + "; ".join(f"{n}" for n in names))


def _train_cmd(args: argparse.Namespace) -> int:
    """``pretrain``, ``finetune`` and ``run`` (which dispatches on ``--task`` as run.py does)."""
    from ssast_fast.train.options import check_training_args, stage_of

    try:
        check_training_args(args)
    except ValueError as exc:
        print(f"ssast-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if stage_of(args.task) == "pretrain":
        from ssast_fast.train.pretrain import pretrain

        pretrain(args)
    else:
        from ssast_fast.train.finetune import finetune

        finetune(args)
    return 0


def _eval_cmd(args: argparse.Namespace) -> int:
    from ssast_fast.train.inference import run_eval

    run_eval(args)
    return 0


def _embed_cmd(args: argparse.Namespace) -> int:
    from ssast_fast.train.inference import run_embed

    run_embed(args)
    return 0


RUN_HELP = ("the reference's run.py: every argument with its meaning and default; replace "
            "`python -W ignore ../run.py` (`../../run.py`) in a recipe by `ssast-fast run`")


def _add_training_commands(sub) -> None:
    from ssast_fast.train.options import add_own_args, add_reference_args

    for name, what in (("run", RUN_HELP),
                       ("pretrain", "self-supervised pretraining (masked patch prediction)"),
                       ("finetune", "supervised fine-tuning from a pretraining checkpoint")):
        p = sub.add_parser(name, help=what, description=what, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if name != "run":  # `run` has no option beginning with --pre: recipes abbreviate --pretrained_mdl_path
            _preset_defaults(p, PRETRAIN_PRESETS if name == "pretrain" else
                             tuple(n for n in PRESETS if n not in PRETRAIN_PRESETS))
        add_reference_args(p, name)
        add_own_args(p, name)
        p.set_defaults(fn=_train_cmd)

    for name, fn, what in (("eval", _eval_cmd, "metrics of a fine-tuned model on a dataset"),
                           ("embed", _embed_cmd, "encoder embeddings of every clip to .npy")):
        e = sub.add_parser(name, help=what, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        e.add_argument("--checkpoint", required=True,
                       help="training checkpoint (its settings are used) or reference-format model file")
        if name == "eval":
            e.add_argument("--data-eval", dest="data_eval", required=True, help="dataset JSON to score")
            e.add_argument("--exp-dir", dest="exp_dir", required=True, help="output folder")
            e.add_argument("--task", default="ft_avgtok", choices=["ft_avgtok", "ft_cls"], help="pooling")
            e.add_argument("--loss", default="BCE", choices=["BCE", "CE"], help="loss reported")
        else:
            e.add_argument("--data", required=True, help="dataset JSON whose clips to embed")
            e.add_argument("--out", required=True, help="output folder")
            e.add_argument("--pool", default="avgtok", choices=["avgtok", "cls"], help="per-clip pooling")
            e.add_argument("--per-patch", dest="per_patch", action="store_true",
                           help="also write patch_embeddings.npy [N, patches, dim]")
            e.add_argument("--patch-fp16", dest="patch_fp16", action="store_true", help="store per-patch as float16")
        _add_inference_args(e)
        e.set_defaults(fn=fn, seed=0, mixup=0.0, noise=False, freqm=0, timem=0, mask_mode="reference")


def _add_inference_args(e: argparse.ArgumentParser) -> None:
    """Data and model flags of ``eval`` / ``embed`` (a training checkpoint's own settings win)."""
    from ssast_fast.train.options import AS_MEAN, AS_STD, MODEL_SIZES, add_progress_args

    g = e.add_argument_group("data and model (for a reference-format file; a training checkpoint brings its own)")
    g.add_argument("--label-csv", dest="label_csv", default=None, help="label CSV (index,mid,display_name)")
    g.add_argument("-b", "--batch-size", dest="batch_size", type=int, default=12, help="clips per batch")
    g.add_argument("-w", "--num-workers", dest="num_workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="data loading worker processes")
    g.add_argument("--fbank-in-workers", dest="fbank_in_workers", action="store_true",
                   help="compute spectrograms in the loader workers instead of in the step")
    g.add_argument("--skip-bad-audio", dest="skip_bad_audio", action="store_true",
                   help="replace missing/undecodable files by the next entry instead of stopping")
    g.add_argument("--model_size", default="base", choices=list(MODEL_SIZES), help="encoder size")
    for flag, default, what in (("--fshape", 16, "patch height in mel bins"), ("--tshape", 16, "patch width in frames"),
                                ("--fstride", 10, "patch stride in frequency"), ("--tstride", 10, "patch stride in time"),
                                ("--target_length", 1024, "spectrogram frames per clip"),
                                ("--num_mel_bins", 128, "mel bins of the filterbank")):
        g.add_argument(flag, type=int, default=default, help=what)
    g.add_argument("--sample-rate", dest="sample_rate", type=int, default=16000, help="Hz (other rates are resampled)")
    g.add_argument("--dataset_mean", type=float, default=AS_MEAN, help="spectrogram mean used to normalize")
    g.add_argument("--dataset_std", type=float, default=AS_STD, help="spectrogram std (input / (2 std))")
    g.add_argument("--attn-backend", dest="attn_backend", default="auto",
                   choices=["auto", "eager", "sdpa", "triton", "amx"], help="attention implementation")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16 runs the model under autocast")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    add_progress_args(g)


def _apply_preset(p: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """Install the chosen preset's values as the sub-command's defaults before the real parse."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = None
    for i, a in enumerate(argv):
        if a == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
        elif a.startswith("--preset="):
            name = a.split("=", 1)[1]
    if name is None or name not in PRESETS or not argv or argv[0] == "run":
        return
    sub = p._subparsers._group_actions[0].choices.get(argv[0])  # noqa: SLF001 (argparse has no public getter)
    if sub is not None:
        sub.set_defaults(**PRESETS[name])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssast-fast", description="Fast, faithful SSAST.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("smoke", help="tiny model: one joint pretraining step and one fine-tuning forward")
    s.add_argument("--batch", type=int, default=4, help="clips per batch")
    s.add_argument("--frames", type=int, default=256, help="spectrogram frames per clip (multiple of 16)")
    s.add_argument("--mask-patch", type=int, default=100, help="masked patches per clip")
    s.add_argument("--seed", type=int, default=0, help="seed for Python's random and torch")
    s.set_defaults(fn=_smoke)
    _add_training_commands(sub)
    add_export_command(sub)
    d = sub.add_parser("demo", help="main job: spoken-keyword corpus (espeak-ng), pretrain, fine-tune vs scratch",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--out", default="runs/demo", help="output folder (the corpus is cached in <out>/corpus)")
    d.add_argument("--seed", type=int, default=0, help="training seed (the corpus has its own fixed seed)")
    d.add_argument("--seeds", default=None, help="comma-separated seeds run one after the other (e.g. 0,1,2)")
    d.add_argument("--quick", action="store_true", help="small corpus and budgets (about 3 minutes; CI)")
    d.add_argument("--smoke", action="store_true", help="tiny sizes for the test suite")
    d.add_argument("--pretrain-epochs", dest="pretrain_epochs", type=int, default=None, help="override the preset")
    d.add_argument("--finetune-epochs", dest="finetune_epochs", type=int, default=None, help="override the preset")
    d.add_argument("--mask-patch", dest="mask_patch", type=int, default=None, help="override the preset")
    d.add_argument("--n-pretrain", dest="n_pretrain", type=int, default=None, help="unlabeled clips (override)")
    d.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    d.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress of every stage: a bar on a terminal, otherwise a line every 15 s")
    d.set_defaults(fn=lambda a: __import__("ssast_fast.demo.run", fromlist=["main"]).main(a))
    return p


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    _apply_preset(parser, argv)
    args = parser.parse_args(argv)
    return args.fn(args)
