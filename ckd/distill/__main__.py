"""`python -m ckd.distill --config FILE [--out DIR] [--resume]`: the torchrun entry point."""

from __future__ import annotations

import argparse
import sys

from ckd.distill.args import DESCRIPTION, add_arguments, run_from_args
from ckd.errors import CKDError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ckd.distill", description=DESCRIPTION)
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_from_args(args)
    except CKDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
