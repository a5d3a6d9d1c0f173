"""Arguments of the training commands ``run``, ``pretrain`` and ``finetune``.

All three accept every argument of the reference's ``run.py`` (``REFERENCE_ARGS``: same names,
same meaning) plus this project's own (``add_own_args``). ``run`` keeps run.py's defaults, so a
recipe line runs unchanged; ``pretrain`` and ``finetune`` have defaults that work without a
recipe (those of :class:`~ssast_fast.train.config.PretrainConfig` / ``FinetuneConfig``). An
argument the reference accepts and then ignores (in one stage or in both) is accepted and
ignored here too, and its help says so. ``check_given`` turns defaults that cannot work (run.py
has no default for ``--dataset_mean``, ``--target_length``, the patch shape, ...) into a
ValueError naming the flags.
"""
from __future__ import annotations

import argparse
import os
from argparse import Namespace
from dataclasses import dataclass, field

from ssast_fast.train.config import AS_MEAN, AS_STD, FINETUNE_TASKS, MODEL_SIZES, PRETRAIN_TASKS, field_names, stage_of


def parse_bool(text: str) -> bool:
    """'True'/'False' (run.py reads these flags with ``ast.literal_eval``), also 1/0, yes/no."""
    t = str(text).strip().lower()
    if t in ("true", "1", "yes", "y", "on"):
        return True
    if t in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


@dataclass(frozen=True)
class RefArg:
    """One argument of run.py.

    ``defaults`` maps a command (``run``, ``pretrain``, ``finetune``) to its default; a missing
    command takes run.py's (``defaults["run"]``). ``ignored`` maps a stage to why the reference
    ignores the argument there; ``missing`` says why a None value cannot work (per stage; "*":
    both).
    """

    flags: tuple[str, ...]
    help: str
    defaults: dict
    kwargs: dict = field(default_factory=dict)
    ignored: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or next(f for f in self.flags if f.startswith("--"))[2:].replace("-", "_")


_NO_DEFAULT = "run.py has no default for it"
_PRETRAIN_IGNORES = "pretraining has no classifier"
REFERENCE_ARGS: tuple[RefArg, ...] = (
    RefArg(("--data-train",), "training dataset JSON", {"run": None}, missing={"*": "the training data"}),
    RefArg(("--data-val",), "validation dataset JSON (not given: the training data; run.py fails without it)",
           {"run": None, "pretrain": None, "finetune": None}),
    RefArg(("--data-eval",), "fine-tuning: evaluation JSON, scored at the end with the best validation model",
           {"run": None}),
    RefArg(("--label-csv",), "label CSV (index,mid,display_name)", {"run": "", "pretrain": None, "finetune": None},
           ignored={"pretrain": "the labels are not used"}, missing={"finetune": "the classes"}),
    RefArg(("--n_class",), "number of classes (rows of the label CSV)", {"run": 527}, {"type": int},
           ignored={"pretrain": _PRETRAIN_IGNORES}),
    RefArg(("--dataset",), "dataset name", {"run": None}, ignored={"pretrain": "only a name", "finetune": "only a name"}),
    RefArg(("--dataset_mean",), "spectrogram mean used to normalize the input",
           {"run": None, "pretrain": AS_MEAN, "finetune": AS_MEAN}, {"type": float}, missing={"*": _NO_DEFAULT}),
    RefArg(("--dataset_std",), "spectrogram std (the input is divided by 2 std)",
           {"run": None, "pretrain": AS_STD, "finetune": AS_STD}, {"type": float}, missing={"*": _NO_DEFAULT}),
    RefArg(("--target_length",), "spectrogram frames per clip (10 ms each; cut or zero-padded)",
           {"run": None, "pretrain": 1024, "finetune": 1024}, {"type": int}, missing={"*": _NO_DEFAULT}),
    RefArg(("--num_mel_bins",), "mel bins of the filterbank", {"run": 128}, {"type": int}),
    RefArg(("--exp-dir",), "output folder (logs, checkpoints, models, result.csv)", {"run": ""},
           missing={"*": "the output folder (run.py would write to /models)"}),
    RefArg(("--lr", "--learning-rate"), "learning rate", {"run": 0.001}, {"type": float, "dest": "lr"}),
    RefArg(("--warmup",), "True: lr = step/1000 x lr, set every 50 of the first 1000 steps",
           {"run": True}, {"type": parse_bool},
           ignored={"pretrain": "pretraining always warms up, as in the reference; --warmup-steps 0 turns it off"}),
    RefArg(("--optim",), "optimizer name", {"run": "adam"}, {"choices": ["sgd", "adam"]},
           ignored={"pretrain": "Adam always, as in the reference", "finetune": "Adam always, as in the reference"}),
    RefArg(("-b", "--batch-size"), "clips per step per process (validation uses twice as many)", {"run": 12},
           {"type": int}),
    RefArg(("-w", "--num-workers"), "data loading worker processes",
           {"run": 16, "pretrain": min(8, os.cpu_count() or 1), "finetune": min(8, os.cpu_count() or 1)},
           {"type": int}),
    RefArg(("--n-epochs",), "epochs", {"run": 1}, {"type": int}),
    RefArg(("--lr_patience",), "ReduceLROnPlateau patience (pretraining: validations; fine-tuning: epochs, "
                               "with --adaptschedule True)", {"run": 1}, {"type": int}),
    RefArg(("--adaptschedule",), "True: fine-tuning uses ReduceLROnPlateau on validation mAP (factor 0.5, "
                                 "patience --lr_patience) instead of the --lrscheduler_* steps",
           {"run": False}, {"type": parse_bool},
           ignored={"pretrain": "pretraining always uses ReduceLROnPlateau"}),
    RefArg(("--n-print-steps",), "log averaged training metrics every N steps", {"run": 100}, {"type": int}),
    RefArg(("--save_model",), "with --wa True, False deletes the per-epoch files of epochs wa_start+1..wa_end "
                              "once averaged (otherwise every per-epoch file is kept)",
           {"run": None}, {"type": parse_bool}, ignored={"pretrain": "no weight averaging in pretraining"}),
    RefArg(("--freqm",), "SpecAugment frequency mask width bound (0: off)", {"run": 0}, {"type": int}),
    RefArg(("--timem",), "SpecAugment time mask width bound (0: off)", {"run": 0}, {"type": int}),
    RefArg(("--mixup",), "probability of waveform mixup per training clip", {"run": 0.0}, {"type": float}),
    RefArg(("--bal",), "'bal': balanced sampling, with replacement, by the weights in "
                       "<training JSON without .json>_weight.csv (as many draws per epoch as clips); "
                       "anything else: shuffled epochs", {"run": None}),
    RefArg(("--fstride",), "patch stride in frequency (fine-tuning; overlap = fshape - fstride)",
           {"run": None, "pretrain": 16, "finetune": 10}, {"type": int},
           ignored={"pretrain": "pretraining uses stride = patch shape"}, missing={"finetune": _NO_DEFAULT}),
    RefArg(("--tstride",), "patch stride in time (fine-tuning)", {"run": None, "pretrain": 16, "finetune": 10},
           {"type": int}, ignored={"pretrain": "pretraining uses stride = patch shape"},
           missing={"finetune": _NO_DEFAULT}),
    RefArg(("--fshape",), "patch height in mel bins (= --num_mel_bins: frame patches, frame masking)",
           {"run": None, "pretrain": 16, "finetune": 16}, {"type": int}, missing={"*": _NO_DEFAULT}),
    RefArg(("--tshape",), "patch width in frames", {"run": None, "pretrain": 16, "finetune": 16}, {"type": int},
           missing={"*": _NO_DEFAULT}),
    RefArg(("--model_size",), "encoder size: tiny (192 wide), small (384), base (768), base_nokd; 12 blocks",
           {"run": "base384", "pretrain": "base", "finetune": "base"}),
    RefArg(("--task",), "pretrain_joint (nce + 10 mse), pretrain_mpc, pretrain_mpg; fine-tuning pooling "
                        "ft_avgtok (mean of patch tokens) or ft_cls",
           {"run": "ft_cls", "pretrain": "pretrain_joint", "finetune": "ft_avgtok"}),
    RefArg(("--mask_patch",), "masked patches per clip in pretraining (validation masks 400, or all the grid "
                              "allows)", {"run": 400}, {"type": int},
           ignored={"finetune": "fine-tuning masks nothing"}),
    RefArg(("--cluster_factor",), "mask clustering factor", {"run": 3}, {"type": int},
           ignored={"pretrain": "cluster sizes are always 3-5, as in the reference", "finetune": "no masking"}),
    RefArg(("--epoch_iter",), "pretraining: validate, checkpoint and step the plateau schedule every N steps",
           {"run": 2000}, {"type": int}, ignored={"finetune": "fine-tuning validates every epoch"}),
    RefArg(("--pretrained_mdl_path",), "pretraining model to fine-tune (reference .pth or our checkpoint); "
                                       "pretrain (ours; the reference ignores it): initial weights",
           {"run": None}),
    RefArg(("--head_lr",), "mlp_head lr = head_lr x lr", {"run": 1.0}, {"type": float},
           ignored={"pretrain": _PRETRAIN_IGNORES}),
    RefArg(("--noise",), "True: noise + time-roll augmentation of training spectrograms",
           {"run": None, "pretrain": False, "finetune": False}, {"type": parse_bool}),
    RefArg(("--metrics",), "metric that picks the best fine-tuned model", {"run": "mAP"}, {"choices": ["mAP", "acc"]},
           ignored={"pretrain": "pretraining keeps the best validation masked accuracy"}),
    RefArg(("--lrscheduler_start",), "first epoch of the fine-tuning lr decay", {"run": 10}, {"type": int},
           ignored={"pretrain": "pretraining uses ReduceLROnPlateau"}),
    RefArg(("--lrscheduler_step",), "decay every N epochs", {"run": 5}, {"type": int},
           ignored={"pretrain": "pretraining uses ReduceLROnPlateau"}),
    RefArg(("--lrscheduler_decay",), "decay factor", {"run": 0.5}, {"type": float},
           ignored={"pretrain": "pretraining uses ReduceLROnPlateau"}),
    RefArg(("--wa",), "True: after training, average the per-epoch models wa_start..wa_end into "
                      "models/audio_model_wa.pth, validate it, write wa_result.csv",
           {"run": None, "pretrain": False, "finetune": False}, {"type": parse_bool},
           ignored={"pretrain": "no weight averaging in pretraining"}),
    RefArg(("--wa_start",), "first epoch (1-based) of the weight average", {"run": 16}, {"type": int},
           ignored={"pretrain": "no weight averaging in pretraining"}),
    RefArg(("--wa_end",), "last epoch of the weight average", {"run": 30}, {"type": int},
           ignored={"pretrain": "no weight averaging in pretraining"}),
    RefArg(("--loss",), "BCE (BCEWithLogits, multi-hot) or CE (CrossEntropy on the argmax label)", {"run": "BCE"},
           {"choices": ["BCE", "CE"]}, ignored={"pretrain": "the pretraining losses are fixed by --task"}),
)


_STAGE_NAMES = {"pretrain": "pretraining", "finetune": "fine-tuning"}


def _help(arg: RefArg, command: str) -> str:
    text = arg.help
    if command == "run":
        notes = [f"{_STAGE_NAMES[s]}: ignored ({why})" for s, why in arg.ignored.items()]
    else:
        why = arg.ignored.get(command)
        notes = [f"accepted and ignored in {_STAGE_NAMES[command]} ({why})"] if why else []
    return text + (" [" + "; ".join(notes) + "]" if notes else "")


def add_reference_args(p: argparse.ArgumentParser, command: str) -> None:
    """Every run.py argument on ``p`` with ``command``'s default (``run``, ``pretrain`` or ``finetune``)."""
    g = p.add_argument_group("arguments of the reference's run.py (same names and meaning)")
    for arg in REFERENCE_ARGS:
        kwargs = dict(arg.kwargs)
        if command != "run" and arg.dest == "task":
            kwargs["choices"] = list(PRETRAIN_TASKS if command == "pretrain" else FINETUNE_TASKS)
        elif arg.dest == "task":
            kwargs["choices"] = list(FINETUNE_TASKS + PRETRAIN_TASKS)
        if arg.dest == "model_size" and command != "run":
            kwargs["choices"] = list(MODEL_SIZES)
        g.add_argument(*arg.flags, default=arg.defaults.get(command, arg.defaults["run"]), help=_help(arg, command),
                       **kwargs)


def add_own_args(p: argparse.ArgumentParser, command: str) -> None:
    """This project's arguments (none begins with ``--pretrain``: recipes abbreviate ``--pretrained_mdl_path``)."""
    g = p.add_argument_group("ssast-fast's own arguments")
    g.add_argument("--sample-rate", dest="sample_rate", type=int, default=16000,
                   help="Hz; files at other rates are resampled (windowed-sinc polyphase)")
    g.add_argument("--attn-backend", dest="attn_backend", default="auto", choices=["auto", "eager", "sdpa", "triton", "amx"],
                   help="attention implementation")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16 runs the model under autocast")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda, cuda:N")
    g.add_argument("--mask-mode", dest="mask_mode", default="reference", choices=["reference", "fast"],
                   help="pretraining masks: reference (the reference's exact index stream) or fast (batched sampler)")
    g.add_argument("--shared-mask", dest="shared_mask", action="store_true",
                   help="pretrain_joint: one mask and encoder pass for both heads (a deviation, ~2x faster)")
    g.add_argument("--warmup-steps", dest="warmup_steps", type=int, default=1000,
                   help="warm-up length in steps (0: none)")
    g.add_argument("--epoch-models", dest="epoch_models", action=argparse.BooleanOptionalAction,
                   default=command == "run",
                   help="write models/audio_model.<N>.pth after every epoch (pretraining: every --epoch_iter "
                        "steps) as the reference does; off: only the epochs --wa averages")
    g.add_argument("--fbank-in-workers", dest="fbank_in_workers", action="store_true",
                   help="compute spectrograms in the loader workers (CPU-only training) instead of in the step")
    g.add_argument("--skip-bad-audio", dest="skip_bad_audio", action="store_true",
                   help="replace missing/undecodable files by the next entry (logged, counted) instead of stopping")
    g.add_argument("--seed", type=int, default=0, help="seed of Python random (masks), NumPy, torch and data order")
    g.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue exactly from a training checkpoint; alone: <exp-dir>/checkpoints/last.pt")
    g.add_argument("--save-every", dest="save_every", type=int, default=0,
                   help="also write checkpoints/last.pt every N steps (0: at validations and epoch ends)")
    add_progress_args(g)


def add_progress_args(g) -> None:
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress: a bar on a terminal, otherwise a line every --progress-interval seconds")
    g.add_argument("--progress-interval", dest="progress_interval", type=float, default=15.0,
                   help="seconds between progress lines when not on a terminal")


def check_given(args: Namespace) -> None:
    """ValueError naming every flag without a usable value in the stage ``--task`` selects (run.py
    has no default for it, or it is required there), and ``--data-eval`` given to pretraining. The
    values themselves are checked by the config (``validate``)."""
    stage = stage_of(args.task)
    missing = [f"{arg.flags[-1]} ({arg.missing.get('*') or arg.missing.get(stage)})" for arg in REFERENCE_ARGS
               if (arg.missing.get("*") or arg.missing.get(stage)) and getattr(args, arg.dest, None) in (None, "")]
    if stage == "finetune" and not args.pretrained_mdl_path and not args.resume:
        missing.append("--pretrained_mdl_path (the model to fine-tune, unless --resume)")
    if missing:
        raise ValueError(f"{'this argument is' if len(missing) == 1 else 'these arguments are'} required for "
                         f"{_STAGE_NAMES[stage]}: " + ", ".join(missing))
    if stage == "pretrain" and args.data_eval:
        raise ValueError("--data-eval is for fine-tuning (the reference fails scoring a pretraining model on it)")


def add_inference_args(e: argparse.ArgumentParser) -> None:
    """The model file, data and model flags of ``eval`` / ``embed`` (a training checkpoint's own settings win)."""
    e.add_argument("--checkpoint", required=True,
                   help="training checkpoint (its settings are used) or reference-format model file")
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


def config_of(cls, args: Namespace):
    """The config ``cls`` (a dataclass) from the parsed arguments of its fields."""
    own = field_names(cls)
    return cls(**{k: v for k, v in vars(args).items() if k in own})
