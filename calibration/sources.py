"""Where calibration (and fidelity-gate) frames come from: sequences to run the tracker over.

Every source is a `ckd.data.clip.Clip` (the kit's one clip type): random-access frame pairs as the network sees
them (`load(i)`: RGB HxWx3 uint8, thermal through the one mapping `thermal_to_8bit`), the 0-based x,y,w,h box to
initialise on, and ground truth when known.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ckd.data.clip import Clip, FrameError
from ckd.data.sequence import IMAGE_SUFFIXES, read_frame
from ckd.errors import CKDError

__all__ = ["Clip", "dataset_clips", "open_clips", "pair_clips", "synthetic_clips"]
# Visible / infrared sub-folder name pairs of image-pair folders (LLVIP, FusionGAN exports, plain exports).
PAIR_DIRS = (("_vi", "_ir"), ("visible", "infrared"), ("rgb", "ir"), ("rgb", "tir"), ("vis", "ir"))
_log = logging.getLogger(__name__)


def synthetic_clips(count: int, frames: int, seed: int, width: int = 320, height: int = 256) -> list[Clip]:
    """`count` procedural sequences (`ckd.data.synthetic`, no thermal crossover), 16-bit thermal as generated."""
    from ckd.data.synthetic import synthetic_clips as generate

    return generate(count, frames, seed, width, height, crossover=False)


def dataset_clips(benchmark: str, root: str | Path, limit: int | None = None) -> list[Clip]:
    """Sequences of an RGBT benchmark laid out on disk (`ckd.data.readers.open_dataset`)."""
    from ckd.data.readers import open_dataset

    clips = []
    for seq in open_dataset(benchmark, root)[:limit]:
        valid = np.flatnonzero(np.isfinite(seq.gt).all(axis=1) & (seq.gt[:, 2:] > 0).all(axis=1))
        if valid.size == 0 or valid[0] != 0:
            continue  # the tracker initialises on frame 0
        clips.append(seq)
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
    """Aligned visible/infrared image pairs with the same file name (no boxes): each pair is a 2-frame clip on the
    same image with a centred box `box_fraction` of the frame, so the tracker produces a template and a run-time
    search crop. Thermal is read as stored; a pair whose visible image cannot be read is left out with a notice."""
    root = Path(root)
    if not root.is_dir():
        raise CKDError(f"{root}: image-pair folder not found")
    clips = []
    for vis_dir, ir_dir in _pair_dirs(root):
        for vis in sorted(p for p in vis_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            ir = ir_dir / vis.name
            if not ir.is_file():
                continue
            try:
                h, w = read_frame(vis, "rgb").shape[:2]
            except FrameError as exc:
                _log.warning("pair %s left out: %s", vis.name, exc)
                continue
            box = np.array([w * (1 - box_fraction) / 2, h * (1 - box_fraction) / 2, w * box_fraction, h * box_fraction])

            def read(i: int, vis=vis, ir=ir) -> tuple[np.ndarray, np.ndarray]:
                return read_frame(vis, "rgb"), read_frame(ir, "thermal")

            clips.append(Clip(f"{vis_dir.name}/{vis.stem}", 2, read, box))
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
