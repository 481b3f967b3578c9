"""Held-out check of a student: track synthetic sequences and score them against a box that never moves.

Frames come straight from the generator as `Clip`s (thermal through `thermal_to_8bit`, the mapping training and
run time use), the tracker is the real one over the torch backend, and scores follow the LasHeR protocol (success
AUC = mean over 21 IoU thresholds, precision at 20 px) with absent-target frames as all-zero truth rows, as in
LasHeR.

    python -m ckd.distill.evaluate [--checkpoint FILE] [--seed 7] [--sequences 8] [--frames 100]

Real image pairs have no ground truth, so `--pairs DIR` measures re-location instead: initialise on a centred box,
move the tracker's estimate by `--shift` box sizes (left, right, up, down) and track the same pair once more; the
IoU of the result with the initial box is scored against the moved box itself (a tracker that does not move).

    python -m ckd.distill.evaluate --pairs ../shared/data/llvip_pairs [--shift 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ckd.errors import CKDError


def track_synthetic(model, seed: int, sequences: int, frames: int, width: int, height: int, keep_ratio=None) -> dict:
    """Scores of `model` and of the static baseline on `sequences` held-out synthetic sequences."""
    from tqdm import tqdm

    from ckd.data.synthetic import synthetic_clips
    from ckd.eval.protocols import SequenceGT, get_protocol
    from ckd.track.torch_backend import TorchBackend
    from ckd.track.tracker import Tracker

    protocol = get_protocol("lasher")
    tracker = Tracker(TorchBackend(model))
    counts = {"student": [], "static": []}
    bar = tqdm(total=sequences * frames, unit="frame", desc="evaluate")
    for j, clip in enumerate(synthetic_clips(sequences, frames, seed, width, height)):
        gt = np.nan_to_num(clip.gt, nan=0.0)
        result = np.empty((frames, 4))
        tracker.init(*clip.load(0), clip.init_box)
        result[0] = clip.init_box
        bar.update(1)
        for i in range(1, frames):
            result[i], _ = tracker.update(*clip.load(i), keep_ratio=keep_ratio)
            bar.update(1)
        truth = SequenceGT(f"synth_{j:03d}", (gt, gt))
        counts["student"].append(protocol.count(truth, result))
        counts["static"].append(protocol.count(truth, np.repeat(gt[:1], frames, axis=0)))
    bar.close()
    return {k: {n: round(v, 4) for n, v in protocol.aggregate(c).values.items()} for k, c in counts.items()}


def relocate_pairs(model, root, shift: float = 0.5, keep_ratio=None) -> dict:
    """Mean IoU with the initial box after one update from an estimate moved by `shift` box sizes (4 directions
    per pair), for the student and for the moved box; plus the share of updates that end at IoU >= 0.5. A pair that
    cannot be used (an unreadable image, RGB and thermal of different sizes) is skipped and counted (one line)."""
    from ckd.data.pairs import pair_clips
    from ckd.eval.metrics import overlap
    from ckd.track.torch_backend import TorchBackend
    from ckd.track.tracker import Tracker

    tracker = Tracker(TorchBackend(model))
    student, moved, skipped = [], [], []
    clips = pair_clips(root)
    for clip in clips:
        box = clip.init_box
        try:
            frame = clip.load(0)
            tracker.init(*frame, box)
        except CKDError as exc:  # an unreadable image (FrameError) or RGB and thermal of different sizes
            skipped.append(f"{clip.name}: {exc}")
            continue
        for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            start = box + np.array([dx * shift * box[2], dy * shift * box[3], 0.0, 0.0])
            tracker.state = start
            student.append(overlap(tracker.update(*frame, keep_ratio=keep_ratio)[0][None], box[None])[0])
            moved.append(overlap(start[None], box[None])[0])
    if skipped:
        print(f"skipped {len(skipped)} of {len(clips)} pairs (first: {skipped[0]})", file=sys.stderr)
    if len(skipped) == len(clips):
        raise CKDError(f"{root}: no usable image pair")
    return {
        "pairs": len(clips) - len(skipped),
        "skipped": len(skipped),
        "shift": shift,
        **{
            name: {"mean_iou": round(float(np.mean(v)), 4), "iou>=0.5": round(float(np.mean(np.array(v) >= 0.5)), 4)}
            for name, v in (("student", student), ("moved box", moved))
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ckd.distill.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="student checkpoint (default: the shipped demo student)")
    p.add_argument("--seed", type=int, default=7, help="synthetic dataset seed (the demo trains on seed 1)")
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--keep-ratio", type=float, default=None, help="CE keep ratio (default: the model's)")
    p.add_argument("--pairs", default=None, metavar="DIR", help="score re-location on image pairs instead")
    p.add_argument("--shift", type=float, default=0.5, help="--pairs: estimate moved by this many box sizes")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from ckd.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.checkpoint)
        if args.pairs:
            scores = relocate_pairs(model, args.pairs, args.shift, args.keep_ratio)
        else:
            scores = track_synthetic(
                model, args.seed, args.sequences, args.frames, args.width, args.height, args.keep_ratio
            )
    except CKDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(scores, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
