"""`ckd track`: run the tracker over a benchmark dataset and write results in its own format."""

from __future__ import annotations

import argparse

from ckd_cli.common import add_checkpoint_arg

BENCHMARKS = ("lasher", "rgbt234", "rgbt210", "gtot", "vtuav")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track",
        help="track every sequence of a dataset, write <seq>.txt results",
        description="Run the CKD tracker over a dataset (initialised from the first ground-truth box) and write "
        "one <seq>.txt per sequence: x,y,w,h per frame, 1-based pixels, comma separated (what the benchmark "
        "toolkits and `ckd eval` read). Frames pair by the number in their file names; a missing, empty or corrupt "
        "frame is reported in one line naming the file and its row is 0,0,0,0 (not tracked, as `ckd run` writes it). "
        "Files are written "
        "atomically; existing results are skipped unless --force.",
    )
    p.add_argument("--benchmark", choices=BENCHMARKS, required=True)
    p.add_argument("--data-root", required=True, help="dataset root in the benchmark's own layout")
    add_checkpoint_arg(p)
    p.add_argument("--out", required=True, help="results folder (one <seq>.txt per sequence)")
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "onnxruntime", "tensorrt"],
        default="auto",
        help="runtime (default auto: the exported --model-dir on TensorRT/ONNX Runtime, else torch on --checkpoint)",
    )
    p.add_argument("--model-dir", default=None, help="exported model folder (manifest.json) for onnxruntime")
    p.add_argument("--keep-ratio", type=float, default=None, help="CE keep ratio (default: the model's)")
    p.add_argument("--sequences", nargs="*", default=None, help="only these sequence names")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the runtime")
    p.add_argument("--force", action="store_true", help="overwrite existing result files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from ckd.data.boxes import to_one_based, write_boxes
    from ckd.data.clip import FrameError
    from ckd.data.readers import open_dataset
    from ckd.errors import CKDError
    from ckd.track.tracker import Tracker

    backend = _make_backend(args)
    sequences = open_dataset(args.benchmark, args.data_root)
    if args.sequences:
        wanted = set(args.sequences)
        unknown = wanted - {s.name for s in sequences}
        if unknown:
            raise CKDError(f"unknown sequences in {args.data_root}: {', '.join(sorted(unknown))}")
        sequences = [s for s in sequences if s.name in wanted]
    out = Path(args.out)
    todo = [s for s in sequences if args.force or not (out / f"{s.name}.txt").exists()]
    if not todo:
        print(f"all {len(sequences)} sequences already have results in {out} (use --force to redo)")
        return 0
    tracker = Tracker(backend)
    frames, model_s, total_s = 0, 0.0, 0.0
    bar = tqdm(total=sum(len(s) for s in todo), unit="frame", desc="track")
    for seq in todo:
        bar.set_postfix_str(seq.name)
        init = seq.gt[0]
        if not np.isfinite(init).all() or init[2] <= 0 or init[3] <= 0:
            raise CKDError(f"{seq.name}: first ground-truth box {init.tolist()} is not a valid init box")
        try:
            tracker.init(*seq.load(0), init)
        except CKDError as exc:  # an unusable first frame, RGB and thermal of different sizes, ...
            reason = "its first frame pair cannot be read" if isinstance(exc, FrameError) else exc
            print(f"{seq.name}: skipped, {reason} (no results written)", file=sys.stderr)
            bar.update(len(seq))
            continue
        boxes = np.empty((len(seq), 4))
        boxes[0] = init
        bar.update(1)
        for i in range(1, len(seq)):
            try:
                rgb, tir = seq.load(i)
            except FrameError:  # reported by the reader; the row is written as not tracked
                boxes[i] = np.nan
                bar.update(1)
                continue
            t0 = time.perf_counter()
            boxes[i], _ = tracker.update(rgb, tir, keep_ratio=args.keep_ratio)
            total_s += time.perf_counter() - t0
            model_s += tracker.last_timing["model_ms"] / 1e3
            frames += 1
            bar.update(1)
        write_boxes(out / f"{seq.name}.txt", np.nan_to_num(to_one_based(boxes), nan=0.0))  # 0,0,0,0: not tracked
        summary = seq.problem_summary()
        if summary:
            print(f"{summary} (rows 0,0,0,0: not tracked)", file=sys.stderr)
    bar.close()
    if frames:
        print(
            f"{len(todo)} sequences, {frames} tracked frames: {frames / total_s:.1f} FPS tracker "
            f"({frames / model_s:.1f} FPS model only, image loading excluded) -> {out}"
        )
    return 0


def _make_backend(args: argparse.Namespace):
    from edge.backends import make_backend

    if args.backend in ("onnxruntime", "tensorrt") and not args.model_dir:
        from ckd.errors import CKDError

        raise CKDError(f"--backend {args.backend} needs --model-dir (made by `ckd export`)")
    return make_backend(args.backend, args.model_dir or args.checkpoint, threads=args.threads)
