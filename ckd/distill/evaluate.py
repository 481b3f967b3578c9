"""Held-out check of a student: track synthetic sequences and score them against a box that never moves.

Frames come straight from the generator as `Clip`s (thermal through `thermal_to_8bit`, the mapping training and
run time use), the tracker is the real one over the torch backend, and scores follow the LasHeR protocol (success
AUC = mean over 21 IoU thresholds, precision at 20 px) with absent-target frames as all-zero truth rows, as in
LasHeR.

    python -m ckd.distill.evaluate [--checkpoint FILE] [--seed 7] [--sequences 8] [--frames 100]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ckd.distill.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="student checkpoint (default: the shipped demo student)")
    p.add_argument("--seed", type=int, default=7, help="synthetic dataset seed (the demo trains on seed 1)")
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--keep-ratio", type=float, default=None, help="CE keep ratio (default: the model's)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    from ckd.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.checkpoint)
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
