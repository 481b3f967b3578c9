"""`ckd calibrate`: INT8 calibration crops sampled by running the tracker, written as verified shards."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="sample INT8 calibration crops by running the tracker over sequences",
        description="Run the tracker over sequences (tracker in the loop, both modalities) and store the template "
        "and search crops exactly as the network sees them at run time: .npz shards of the four named inputs plus "
        "calibration.json (source, seed, count, input shapes, model, sha256 per shard).",
    )
    p.add_argument(
        "--model",
        default=None,
        help="folder from `ckd export` (runs in ONNX Runtime FP32) or a checkpoint (torch); default: the demo student",
    )
    add_clip_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (shards + calibration.json)")
    p.add_argument("--frames", type=int, default=256, help="number of calibration samples (default 256)")
    p.add_argument("--every", type=int, default=2, help="record every N-th tracked frame (default 2)")
    p.add_argument("--shard-size", type=int, default=64, help="samples per shard (default 64)")
    p.set_defaults(func=run)


def add_clip_args(p, prefix: str = "", sequences: int = 8, length: int = 64, seed: int = 0) -> None:
    """Options naming the clips to track (`calibration.sources.open_clips`), e.g. with prefix "eval-"."""
    p.add_argument(
        f"--{prefix}benchmark",
        default="synthetic",
        help="synthetic (generated), pairs (folder of visible/infrared image pairs, centred boxes) or a dataset "
        "layout: lasher, rgbt234, rgbt210, gtot, vtuav (default synthetic)",
    )
    p.add_argument(f"--{prefix}data", default=None, metavar="DIR", help="dataset root or image-pair folder")
    p.add_argument(
        f"--{prefix}sequences", type=int, default=sequences, help=f"synthetic / max dataset sequences ({sequences})"
    )
    p.add_argument(f"--{prefix}length", type=int, default=length, help=f"frames per synthetic sequence ({length})")
    p.add_argument(f"--{prefix}seed", type=int, default=seed, help=f"synthetic seed ({seed})")


def tracking_backend(model: str | None):
    """(backend, model identity) for a model argument: an export folder runs in ORT, anything else in torch."""
    from pathlib import Path

    from ckd.model.checkpoint import DEMO_STUDENT, file_sha256
    from edge.backends import make_backend

    if model and Path(model).is_dir():
        backend = make_backend("onnxruntime", model, precision="fp32")
        return backend, backend.manifest.model_identity()
    backend = make_backend("torch", model)
    return backend, {"name": backend.cfg.name, "checkpoint_sha256": file_sha256(model or DEMO_STUDENT)}


def run(args: argparse.Namespace) -> int:
    import sys

    from calibration.sampler import sample_crops
    from calibration.sources import open_clips
    from calibration.store import write_calibration
    from ckd.errors import CKDError

    if args.frames < 1:
        raise CKDError(f"--frames must be >= 1, got {args.frames}")
    backend, identity = tracking_backend(args.model)
    clips = open_clips(args.benchmark, args.data, args.sequences, args.length, args.seed)
    crops = sample_crops(backend, clips, args.frames, every=args.every, progress=True)
    for summary in filter(None, (clip.problem_summary() for clip in clips)):
        print(f"{summary} (skipped)", file=sys.stderr)
    source = f"{args.benchmark}:{args.data}" if args.data else args.benchmark
    cal = write_calibration(args.out, crops, source, args.seed, identity, args.shard_size)
    if cal.count < args.frames:
        print(f"note: the source gave only {cal.count} of the {args.frames} samples asked for")
    print(f"wrote {cal.count} samples in {len(cal.shards)} shards to {args.out}")
    return 0
