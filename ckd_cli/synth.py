"""`ckd synth`: write a seeded synthetic RGB-thermal dataset in the LasHeR layout."""

from __future__ import annotations

import argparse


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="generate a synthetic RGB-thermal dataset (LasHeR layout)",
        description="Generate synth_000, synth_001, ... in DIR with visible/ and infrared/ JPEGs and init.txt, "
        "visible.txt, infrared.txt (1-based x,y,w,h, comma; 0,0,0,0 where the target is hidden or out of view). "
        "Thermal frames are 16-bit centikelvin counts written as 8-bit grey by thermal_to_8bit (per-frame 1-99 %% "
        "percentile stretch), the one mapping training, calibration and the live pipeline use. Odd-numbered "
        "sequences include a thermal crossover. Same seed, same dataset.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty or new, see --force)")
    p.add_argument("--sequences", type=_positive, default=4, metavar="N", help="number of sequences (default 4)")
    p.add_argument("--frames", type=_positive, default=100, metavar="F", help="frames per sequence (default 100)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--width", type=int, default=640, help="frame width in pixels (default 640, at least 64)")
    p.add_argument("--height", type=int, default=480, help="frame height in pixels (default 480, at least 64)")
    p.add_argument("--force", action="store_true", help="write into a non-empty DIR, replacing same-named sequences")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ckd.data.synthetic import write_dataset
    from ckd.errors import CKDError

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CKDError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise CKDError(f"--out {out} is not empty; choose a new folder or pass --force")
    if args.width < 64 or args.height < 64:
        raise CKDError(f"frames must be at least 64x64 pixels, got {args.width}x{args.height}")
    names = write_dataset(out, args.sequences, args.frames, args.seed, args.width, args.height, progress=True)
    print(f"wrote {len(names)} sequences x {args.frames} frames ({args.width}x{args.height}) to {out}")
    return 0
