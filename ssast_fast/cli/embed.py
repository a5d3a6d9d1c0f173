"""``ssast-fast embed``: encoder embeddings of every clip to .npy (:func:`ssast_fast.train.inference.run_embed`)."""
from __future__ import annotations

import argparse

from ssast_fast.cli.options import add_inference_args, config_of
from ssast_fast.train.config import EmbedConfig
from ssast_fast.train.inference import run_embed


def add_command(sub) -> None:
    e = sub.add_parser("embed", help="encoder embeddings of every clip to .npy",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("--data", required=True, help="dataset JSON whose clips to embed")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--pool", default="avgtok", choices=["avgtok", "cls"], help="per-clip pooling")
    e.add_argument("--per-patch", dest="per_patch", action="store_true",
                   help="also write patch_embeddings.npy [N, patches, dim]")
    e.add_argument("--patch-fp16", dest="patch_fp16", action="store_true", help="store per-patch as float16")
    add_inference_args(e)
    e.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    run_embed(config_of(EmbedConfig, args))
    return 0
