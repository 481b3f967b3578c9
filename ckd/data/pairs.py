"""Folders of aligned visible/infrared image pairs without boxes (LLVIP, FusionGAN exports, plain exports) as
2-frame `Clip`s: both frames are the same pair, initialised on a centred box, so a tracker run gives a template
and a run-time search crop of real images."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ckd.data.clip import Clip, FrameError
from ckd.data.sequence import IMAGE_SUFFIXES, read_frame
from ckd.errors import CKDError

# Visible / infrared sub-folder name pairs.
PAIR_DIRS = (("_vi", "_ir"), ("visible", "infrared"), ("rgb", "ir"), ("rgb", "tir"), ("vis", "ir"))
_log = logging.getLogger(__name__)


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
