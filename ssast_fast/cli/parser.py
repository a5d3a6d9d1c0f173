"""The ``ssast-fast`` parser: every command's sub-parser, and :func:`main`."""
from __future__ import annotations

import argparse
import logging

from ssast_fast.cli import demo, embed, evaluate, export, smoke, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssast-fast", description="Fast, faithful SSAST.")
    sub = p.add_subparsers(dest="command", required=True)
    smoke.add_command(sub)
    train.add_commands(sub)
    evaluate.add_command(sub)
    embed.add_command(sub)
    export.add_command(sub)
    demo.add_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's), run the command -> exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    train.apply_preset(parser, argv)
    args = parser.parse_args(argv)
    return args.fn(args)
