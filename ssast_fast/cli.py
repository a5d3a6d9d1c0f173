"""Command line: ``ssast-fast <command>`` (also ``python -m ssast_fast``).

Commands: ``smoke`` (tiny self-check), ``pretrain``, ``finetune``, ``eval``, ``embed``, ``demo`` (main job). Flag names
and defaults follow the reference's run.py where it has them; ``--preset`` fills a reference recipe.
"""
from __future__ import annotations

import argparse
import os
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


def _bool(text: str) -> bool:
    """'True'/'False' (the reference's literal_eval flags), also 1/0, yes/no."""
    t = str(text).strip().lower()
    if t in ("true", "1", "yes", "y", "on"):
        return True
    if t in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _add_model_args(p: argparse.ArgumentParser, pretraining: bool) -> None:
    g = p.add_argument_group("model and input")
    g.add_argument("--model_size", default="base", choices=["tiny", "small", "base", "base_nokd"],
                   help="encoder size (tiny 192, small 384, base 768 wide; 12 blocks)")
    g.add_argument("--fshape", type=int, default=16, help="patch height in mel bins (128 = frame patches)")
    g.add_argument("--tshape", type=int, default=16, help="patch width in frames")
    g.add_argument("--fstride", type=int, default=16 if pretraining else 10,
                   help="patch stride in frequency (pretraining always uses fshape)")
    g.add_argument("--tstride", type=int, default=16 if pretraining else 10,
                   help="patch stride in time (pretraining always uses tshape)")
    g.add_argument("--target_length", type=int, default=1024, help="spectrogram frames per clip (10 ms each)")
    g.add_argument("--num_mel_bins", type=int, default=128, help="mel bins of the filterbank")
    g.add_argument("--sample-rate", dest="sample_rate", type=int, default=16000,
                   help="Hz; files at other rates are resampled (windowed-sinc polyphase)")
    g.add_argument("--dataset_mean", type=float, default=-4.2677393, help="spectrogram mean used to normalize")
    g.add_argument("--dataset_std", type=float, default=4.5689974, help="spectrogram std (input / (2 std))")
    g.add_argument("--attn-backend", dest="attn_backend", default="auto", choices=["auto", "eager", "sdpa", "triton", "amx"],
                   help="attention implementation")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16 runs the model under autocast")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda, cuda:N")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--exp-dir", dest="exp_dir", required=True, help="output folder (logs, checkpoints, plots)")
    g.add_argument("--seed", type=int, default=0, help="seed of Python random (masks), NumPy, torch and data order")
    g.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue exactly from a training checkpoint; alone: <exp-dir>/checkpoints/last.pt")
    g.add_argument("--save-every", dest="save_every", type=int, default=0,
                   help="also write checkpoints/last.pt every N steps (0: at validations and epoch ends)")
    g.add_argument("--n-print-steps", dest="n_print_steps", type=int, default=100,
                   help="log averaged training metrics every N steps")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")


def _add_data_args(p: argparse.ArgumentParser, train: bool) -> None:
    g = p.add_argument_group("data")
    if train:
        g.add_argument("--data-train", dest="data_train", required=True, help="training dataset JSON")
        g.add_argument("--data-val", dest="data_val", default=None, help="validation dataset JSON (default: training)")
    g.add_argument("--label-csv", dest="label_csv", default=None, help="label CSV (index,mid,display_name)")
    g.add_argument("-b", "--batch-size", dest="batch_size", type=int, default=12,
                   help="clips per step per process (validation uses twice as many)")
    g.add_argument("-w", "--num-workers", dest="num_workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="data loading worker processes")
    g.add_argument("--fbank-in-workers", dest="fbank_in_workers", action="store_true",
                   help="compute spectrograms in the loader workers (CPU-only training) instead of in the step")
    g.add_argument("--skip-bad-audio", dest="skip_bad_audio", action="store_true",
                   help="replace missing/undecodable files by the next entry (logged, counted) instead of stopping")
    if train:
        g.add_argument("--freqm", type=int, default=0, help="SpecAugment frequency mask width bound (0: off)")
        g.add_argument("--timem", type=int, default=0, help="SpecAugment time mask width bound (0: off)")
        g.add_argument("--mixup", type=float, default=0.0, help="probability of waveform mixup per clip")
        g.add_argument("--noise", type=_bool, default=False, help="True: noise + time-roll augmentation")


def _add_optim_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimization")
    g.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=0.001, help="learning rate")
    g.add_argument("--n-epochs", dest="n_epochs", type=int, default=1, help="epochs")
    g.add_argument("--warmup", type=_bool, default=True,
                   help="True: lr = step/1000 * lr, set every 50 steps over the first 1000 steps")
    g.add_argument("--warmup-steps", dest="warmup_steps", type=int, default=1000, help="warm-up length in steps")


def _preset_defaults(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    p.add_argument("--preset", choices=list(names), default=None,
                   help="fill the reference recipe's settings (explicit flags still win): "
                        + "; ".join(f"{n}" for n in names))


def _pretrain_cmd(args: argparse.Namespace) -> int:
    from ssast_fast.train.pretrain import pretrain

    pretrain(args)
    return 0


def _finetune_cmd(args: argparse.Namespace) -> int:
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


def _add_training_commands(sub) -> None:
    pre = sub.add_parser("pretrain", help="self-supervised pretraining (masked patch prediction)",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _preset_defaults(pre, PRETRAIN_PRESETS)
    _add_data_args(pre, True)
    _add_model_args(pre, True)
    g = pre.add_argument_group("pretraining")
    g.add_argument("--task", default="pretrain_joint", choices=["pretrain_joint", "pretrain_mpc", "pretrain_mpg"],
                   help="objective: joint (nce + 10 mse), discriminative or generative")
    g.add_argument("--mask_patch", type=int, default=400, help="masked patches per clip in training")
    g.add_argument("--mask-mode", dest="mask_mode", default="reference", choices=["reference", "fast"],
                   help="reference: the reference's exact index stream; fast: batched on-device sampler")
    g.add_argument("--shared-mask", dest="shared_mask", action="store_true",
                   help="joint task: one mask and encoder pass for both heads (deviation, ~2x faster)")
    g.add_argument("--epoch_iter", type=int, default=2000, help="validate, checkpoint and step the plateau schedule every N steps")
    g.add_argument("--lr_patience", type=int, default=1, help="ReduceLROnPlateau patience (validations)")
    _add_optim_args(pre)
    _add_run_args(pre)
    pre.set_defaults(fn=_pretrain_cmd, stage="pretrain", n_class=0)

    ft = sub.add_parser("finetune", help="supervised fine-tuning from a pretraining checkpoint",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _preset_defaults(ft, tuple(n for n in PRESETS if n not in PRETRAIN_PRESETS))
    _add_data_args(ft, True)
    ft.add_argument("--data-eval", dest="data_eval", default=None,
                    help="evaluation JSON, scored with the best validation model at the end")
    _add_model_args(ft, False)
    g = ft.add_argument_group("fine-tuning")
    g.add_argument("--task", default="ft_avgtok", choices=["ft_avgtok", "ft_cls"],
                   help="pooling: mean of patch tokens or the cls tokens")
    g.add_argument("--n_class", type=int, default=527, help="number of classes (rows of the label CSV)")
    g.add_argument("--pretrained_mdl_path", default=None,
                   help="pretraining checkpoint (reference format or our training checkpoint)")
    g.add_argument("--head_lr", type=float, default=1.0, help="mlp_head lr = head_lr x lr")
    g.add_argument("--lrscheduler_start", type=int, default=10, help="first epoch of the lr decay")
    g.add_argument("--lrscheduler_step", type=int, default=5, help="decay every N epochs")
    g.add_argument("--lrscheduler_decay", type=float, default=0.5, help="decay factor")
    g.add_argument("--loss", default="BCE", choices=["BCE", "CE"], help="BCEWithLogits or CrossEntropy (argmax label)")
    g.add_argument("--metrics", default="mAP", choices=["mAP", "acc"], help="metric that picks the best model")
    _add_optim_args(ft)
    _add_run_args(ft)
    ft.set_defaults(fn=_finetune_cmd, stage="finetune", mask_mode="reference", shared_mask=False)

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
        _add_data_args(e, False)
        _add_model_args(e, False)
        e.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
        e.set_defaults(fn=fn, seed=0, mixup=0.0, noise=False, freqm=0, timem=0, mask_mode="reference")


def _apply_preset(p: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """Install the chosen preset's values as the sub-command's defaults before the real parse."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    name = None
    for i, a in enumerate(argv):
        if a == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
        elif a.startswith("--preset="):
            name = a.split("=", 1)[1]
    if name is None or name not in PRESETS or not argv:
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
    d.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False, help="tqdm progress bars")
    d.set_defaults(fn=lambda a: __import__("ssast_fast.demo.run", fromlist=["main"]).main(a))
    return p


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    _apply_preset(parser, argv)
    args = parser.parse_args(argv)
    return args.fn(args)
