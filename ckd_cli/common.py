"""Small helpers shared by CLI commands."""

from __future__ import annotations

import argparse

from ckd.errors import CKDError


def parse_floats(text: str, what: str = "values") -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CKDError(f"{what} must be comma-separated numbers, got {text!r}") from None


def float_list(what: str):
    """argparse type for comma-separated floats."""

    def parse(text: str) -> list[float]:
        try:
            return parse_floats(text, what)
        except CKDError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="official .pth.tar ({'net': state_dict}) or the kit's .safetensors (+ .json config beside it); "
        "default: the shipped demo student",
    )
