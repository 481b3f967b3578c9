"""`ckd` entry point: one subcommand per module in this package, heavy imports deferred to the command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ckd.errors import CKDError

# Each module exposes `register(subparsers)`, which adds its parser and sets `func=run(args) -> int`.
COMMANDS = [
    "synth",
    "forward",
    "track",
    "eval",
    "distill",
    "export",
    "calibrate",
    "quantize",
    "check_trt",
    "build",
    "flash",
    "verify_bundle",
    "run",
    "calibrate_rig",
    "bench",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ckd",
        description="CKD RGB-thermal tracker kit: distill, export, quantize, build, run and benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ckd_cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ckd_cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


class _Stderr(logging.Handler):
    """The kit's notices (e.g. what the thermal frames are, an unusable frame) as plain lines on the current
    stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _show_notices() -> None:
    for name in ("ckd", "calibration"):
        log = logging.getLogger(name)
        if not any(isinstance(h, _Stderr) for h in log.handlers):
            log.addHandler(_Stderr())
            log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    _show_notices()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CKDError as exc:
        print(f"ckd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ckd {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ckd eval ... | head`: the reader went away, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
