"""Where calibration (and fidelity-gate) frames come from: sequences to run the tracker over.

A source is a `Clip`: a name, a frame count, a random-access `load(i) -> (rgb, tir)` (HxWx3 uint8 RGB order,
thermal HxW or HxWx3 uint8) and the 0-based x,y,w,h box to initialise on, plus ground truth when known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ckd.errors import CKDError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Visible / infrared sub-folder name pairs of image-pair folders (LLVIP, FusionGAN exports, plain exports).
PAIR_DIRS = (("_vi", "_ir"), ("visible", "infrared"), ("rgb", "ir"), ("rgb", "tir"), ("vis", "ir"))


@dataclass
class Clip:
    """A sequence to track: `load(i)` gives frame pair i, `gt` (N x 4, NaN rows = absent) when known."""

    name: str
    frames: int
    load: Callable[[int], tuple[np.ndarray, np.ndarray]]
    init_box: np.ndarray
    gt: np.ndarray | None = None


def synthetic_clips(count: int, frames: int, seed: int, width: int = 320, height: int = 256) -> list[Clip]:
    """`count` procedural sequences (`ckd.data.synthetic`), thermal mapped to 8 bits by the kit's AGC."""
    from ckd.data.synthetic import SyntheticSequence, sequence_seed
    from ckd.data.thermal import ThermalAGC

    clips = []
    for k in range(count):
        seq = SyntheticSequence(sequence_seed(seed, k), frames=frames, width=width, height=height)
        gt = np.where(seq.visible[:, None], seq.boxes, np.nan)
        clips.append(Clip(f"synthetic-{seed}-{k}", frames, _InOrder(seq, ThermalAGC()), seq.boxes[0].copy(), gt))
    return clips


class _InOrder:
    """Random access over a synthetic sequence whose thermal AGC must see frames in order (cheap when in order)."""

    def __init__(self, seq, agc) -> None:
        self.seq, self.agc = seq, agc
        self.next = 0
        self.last: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self.last is not None and self.last[0] == i:
            return self.last[1]
        if i < self.next:
            self.agc.reset()
            self.next = 0
        while self.next <= i:
            f = self.seq.frame(self.next)
            self.last = (self.next, (f.rgb, self.agc(f.thermal16)))
            self.next += 1
        return self.last[1]


def dataset_clips(benchmark: str, root: str | Path, limit: int | None = None) -> list[Clip]:
    """Sequences of an RGBT benchmark laid out on disk (`ckd.data.readers.open_dataset`)."""
    from ckd.data.readers import open_dataset

    clips = []
    for seq in open_dataset(benchmark, root)[:limit]:
        valid = np.flatnonzero(np.isfinite(seq.gt).all(axis=1) & (seq.gt[:, 2:] > 0).all(axis=1))
        if valid.size == 0 or valid[0] != 0:
            continue  # the tracker initialises on frame 0
        clips.append(Clip(seq.name, len(seq), seq.load, seq.gt[0].copy(), seq.gt))
    if not clips:
        raise CKDError(f"{root}: no {benchmark} sequence has a ground-truth box on its first frame")
    return clips


def _pair_dirs(root: Path) -> list[tuple[Path, Path]]:
    found = []
    for vis in sorted(p for p in root.rglob("*") if p.is_dir()) + [root]:
        for v_tag, i_tag in PAIR_DIRS:
            if vis.name.lower().endswith(v_tag):
                ir = vis.with_name(vis.name[: len(vis.name) - len(v_tag)] + i_tag)
                if ir.is_dir():
                    found.append((vis, ir))
    return found


def pair_clips(root: str | Path, box_fraction: float = 0.25) -> list[Clip]:
    """Aligned visible/infrared image pairs (no boxes): each pair is a 2-frame clip on the same image with a
    centred box `box_fraction` of the frame, so the tracker produces a template and a run-time search crop."""
    from ckd.data.sequence import read_image_rgb

    root = Path(root)
    if not root.is_dir():
        raise CKDError(f"{root}: image-pair folder not found")
    clips = []
    for vis_dir, ir_dir in _pair_dirs(root):
        for vis in sorted(p for p in vis_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            ir = ir_dir / vis.name
            if not ir.is_file():
                continue
            rgb = read_image_rgb(vis)
            h, w = rgb.shape[:2]
            box = np.array([w * (1 - box_fraction) / 2, h * (1 - box_fraction) / 2, w * box_fraction, h * box_fraction])

            def load(i: int, vis=vis, ir=ir) -> tuple[np.ndarray, np.ndarray]:
                return read_image_rgb(vis), read_image_rgb(ir)

            clips.append(Clip(f"{vis_dir.name}/{vis.stem}", 2, load, box))
    if not clips:
        tags = ", ".join(f"*{v}/ + *{i}/" for v, i in PAIR_DIRS)
        raise CKDError(f"{root}: no visible/infrared image pairs found (sub-folders named like {tags})")
    return clips


def open_clips(benchmark: str, data: str | Path | None, sequences: int, frames: int, seed: int) -> list[Clip]:
    """Clips for `--benchmark`: `synthetic` (generated, `data` unused), `pairs` (image-pair folder) or a dataset."""
    if benchmark == "synthetic":
        return synthetic_clips(sequences, frames, seed)
    if data is None:
        raise CKDError(f"--data is required for --benchmark {benchmark}")
    if benchmark == "pairs":
        return pair_clips(data)
    return dataset_clips(benchmark, data, limit=sequences)
