"""`ckd distill --config FILE [--out DIR] [--resume]`: CKD training (single process; torchrun for several)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ckd.distill.args import DESCRIPTION, add_arguments

    p = sub.add_parser("distill", help="train CKD students by coupled knowledge distillation", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ckd.distill.args import run_from_args

    return run_from_args(args)
