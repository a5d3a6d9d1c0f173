"""``ssast-fast demo``: the spoken-keyword main job (:func:`ssast_fast.demo.run.run_demo`)."""
from __future__ import annotations

import argparse

from ssast_fast.demo.run import run_demo

OVERRIDES = ("pretrain_epochs", "finetune_epochs", "mask_patch")


def add_command(sub) -> None:
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
    d.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    seeds = [int(s) for s in str(args.seeds).split(",")] if args.seeds else [args.seed]
    return run_demo(args.out, seeds, "smoke" if args.smoke else "quick" if args.quick else "full",
                    overrides={k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None},
                    n_pretrain=args.n_pretrain, threads=args.threads, progress=args.progress)
