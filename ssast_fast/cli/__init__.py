"""Command line: ``ssast-fast <command>`` (also ``python -m ssast_fast``), one module per command.

``smoke`` (:mod:`.smoke`), ``run`` / ``pretrain`` / ``finetune`` (:mod:`.train`, arguments in
:mod:`.options`), ``eval`` (:mod:`.evaluate`), ``embed`` (:mod:`.embed`), ``demo`` (:mod:`.demo`),
``export`` (:mod:`.export`); :mod:`.parser` puts them together. Each command turns its arguments
into a typed config (:mod:`ssast_fast.train.config`) and calls the library.
"""
from ssast_fast.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
