"""``ssast-fast eval``: metrics of a fine-tuned model on a dataset (:func:`ssast_fast.train.inference.run_eval`)."""
from __future__ import annotations

import argparse

from ssast_fast.cli.options import add_inference_args, config_of
from ssast_fast.train.config import FINETUNE_TASKS, EvalConfig
from ssast_fast.train.inference import run_eval


def add_command(sub) -> None:
    e = sub.add_parser("eval", help="metrics of a fine-tuned model on a dataset",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("--data-eval", dest="data_eval", required=True, help="dataset JSON to score")
    e.add_argument("--exp-dir", dest="exp_dir", required=True, help="output folder")
    e.add_argument("--task", default="ft_avgtok", choices=list(FINETUNE_TASKS), help="pooling")
    e.add_argument("--loss", default="BCE", choices=["BCE", "CE"], help="loss reported")
    add_inference_args(e)
    e.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    run_eval(config_of(EvalConfig, args))
    return 0
