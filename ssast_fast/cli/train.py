"""``ssast-fast run`` (the reference's run.py, dispatching on ``--task``), ``pretrain`` and ``finetune``:
every run.py argument (:mod:`.options`) -> :class:`~ssast_fast.train.config.PretrainConfig` or
:class:`~ssast_fast.train.config.FinetuneConfig` -> the training loop. ``--preset`` fills a
reference recipe for ``pretrain`` / ``finetune`` (explicit flags still win)."""
from __future__ import annotations

import argparse
import sys

from ssast_fast.cli.options import add_own_args, add_reference_args, check_given
from ssast_fast.train.config import AS_MEAN, AS_STD, FinetuneConfig, PretrainConfig, RunConfig, field_names, stage_of
from ssast_fast.train.finetune import finetune
from ssast_fast.train.pretrain import pretrain

# Named recipes (SPEC.md section 4 and the reference's run scripts); explicit flags override them.
AS_STATS = dict(dataset_mean=AS_MEAN, dataset_std=AS_STD)
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
RUN_HELP = ("the reference's run.py: every argument with its meaning and default; replace "
            "`python -W ignore ../run.py` (`../../run.py`) in a recipe by `ssast-fast run`")
_JSON = (str, int, float, bool, type(None), list)


def add_commands(sub) -> None:
    for name, what in (("run", RUN_HELP),
                       ("pretrain", "self-supervised pretraining (masked patch prediction)"),
                       ("finetune", "supervised fine-tuning from a pretraining checkpoint")):
        p = sub.add_parser(name, help=what, description=what, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if name != "run":  # `run` has no option beginning with --pre: recipes abbreviate --pretrained_mdl_path
            names = PRETRAIN_PRESETS if name == "pretrain" else tuple(n for n in PRESETS if n not in PRETRAIN_PRESETS)
            p.add_argument("--preset", choices=list(names), default=None,
                           help="fill the reference recipe's settings (explicit flags still win): " + "; ".join(names))
        add_reference_args(p, name)
        add_own_args(p, name)
        p.set_defaults(fn=run)


def apply_preset(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
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
    sub = parser._subparsers._group_actions[0].choices.get(argv[0])  # noqa: SLF001 (argparse has no public getter)
    if sub is not None:
        sub.set_defaults(**PRESETS[name])


def to_config(args: argparse.Namespace) -> RunConfig:
    """The parsed arguments as the config of the stage ``--task`` selects; the arguments it has no
    field for (ignored by that stage, as run.py ignores them; the command; --preset) go to
    ``cli_args`` (config.json lists them)."""
    cls = PretrainConfig if stage_of(args.task) == "pretrain" else FinetuneConfig
    own = field_names(cls)
    values = {k: v for k, v in vars(args).items() if isinstance(v, _JSON)}
    return cls(**{k: v for k, v in values.items() if k in own},
               cli_args={k: v for k, v in values.items() if k not in own})


def run(args: argparse.Namespace) -> int:
    """``run``, ``pretrain`` and ``finetune`` (run dispatches on ``--task`` as run.py does)."""
    try:
        check_given(args)
        config = to_config(args)
        config.validate()
    except ValueError as exc:
        print(f"ssast-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(config, PretrainConfig):
        pretrain(config)
    else:
        finetune(config)
    return 0
