"""Readers for the RGBT tracking benchmarks' folder layouts, all returning `Sequence` in kit convention.

Every ground-truth file is read with `read_boxes` (CRLF or LF, commas, tabs or spaces), converted from the files'
1-based pixels to 0-based x, y, w, h; rows with w <= 0 or h <= 0 (all-zero rows mark an absent target) and frames
without an annotation become NaN rows. Frames pair by the number in their file names (`v000012.jpg` with
`i000012.jpg`, `00012v.jpg` with `00012i.jpg`), never by position: a frame missing on one sensor leaves a hole at
its own number, counted and reported, instead of shifting every later frame. Only paths are handled, never a
shell, so names such as `leftgirl'swhitebag` are safe. Thermal frames are read as stored (16-bit PNG/TIFF, 8-bit
grey, grey JPEG with 3 channels) and recognised from the data when loaded (`ckd.data.clip`).

LasHeR (1224 sequences; `trainingset` 979, `testingset` 245; official zips unpack to
    `TrainingSet/trainingset/<seq>` and `TestingSet/testingset/<seq>`):
    <seq>/visible/v000000.jpg…, <seq>/infrared/i000000.jpg… (aligned, same size)
    <seq>/init.txt            x,y,w,h comma separated, 1-based, CRLF; 0,0,0,0 = target absent
    <seq>/visible.txt, <seq>/infrared.txt   per-modality copies when shipped (used: init.txt, then visible.txt)
RGBT234 (234 sequences, one folder):
    <seq>/visible/00001v.jpg…, <seq>/infrared/00001i.jpg…
    <seq>/visible.txt, <seq>/infrared.txt   per-modality x,y,w,h, comma, 1-based, CRLF -> `gt`, `gt_tir`
    <seq>/init.txt            the older single ground truth (fallback when visible.txt is missing)
RGBT210 (210 sequences, a subset of RGBT234 with one ground truth):
    <seq>/visible/…, <seq>/infrared/…, <seq>/init.txt  x,y,w,h comma, 1-based, CRLF
GTOT (50 small grayscale-thermal sequences):
    <seq>/v/00001v.png…, <seq>/i/00001i.png…
    <seq>/groundTruth_v.txt, <seq>/groundTruth_i.txt   CORNERS x1 y1 x2 y2, space separated, 1-based;
        w = x2 - x1 as in GTOT's own toolkit (this reproduces its init.txt exactly) -> `gt`, `gt_tir`
    <seq>/init.txt            x y w h, TAB separated, CRLF (fallback)
VTUAV (500 UAV sequences, 1920x1080; splits `train_ST`, `train_LT`, `test_ST`, `test_LT`):
    <split>/<seq>/rgb/000000.jpg…, <split>/<seq>/ir/000000.jpg…
    <split>/<seq>/rgb.txt, <split>/<seq>/ir.txt   x y w h annotated every 10th frame: row k is frame 10 k,
        the frames in between are NaN here (not interpolated); taken as 1-based like the others (the benchmark
        does not state it; the half-pixel question is far below its annotation noise)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ckd.data.boxes import corners_to_xywh, read_boxes, to_zero_based
from ckd.data.sequence import Sequence, number_frames
from ckd.errors import CKDError

BENCHMARKS = ("lasher", "rgbt234", "rgbt210", "gtot", "vtuav")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where one benchmark keeps frames and ground truth inside a sequence folder."""

    rgb_dir: str
    tir_dir: str
    gt_files: tuple[str, ...]  # visible/main ground truth, first one present wins
    gt_tir_file: str | None  # separate infrared ground truth, if the benchmark has one
    corners: bool = False  # x1 y1 x2 y2 instead of x y w h (first gt file only)
    every: int = 1  # one annotation row per `every` frames
    splits: tuple[tuple[str, tuple[str, ...]], ...] = ()  # split name -> folders to try under the root


LAYOUTS: dict[str, Layout] = {
    "lasher": Layout(
        "visible",
        "infrared",
        ("init.txt", "visible.txt"),
        None,
        splits=(
            ("train", ("trainingset", "TrainingSet/trainingset", "TrainingSet")),
            ("test", ("testingset", "TestingSet/testingset", "TestingSet")),
        ),
    ),
    "rgbt234": Layout("visible", "infrared", ("visible.txt", "init.txt"), "infrared.txt"),
    "rgbt210": Layout("visible", "infrared", ("init.txt",), None),
    "gtot": Layout("v", "i", ("groundTruth_v.txt", "init.txt"), "groundTruth_i.txt", corners=True),
    "vtuav": Layout("rgb", "ir", ("rgb.txt",), "ir.txt", every=10),
}


def _layout(benchmark: str) -> Layout:
    key = benchmark.lower()
    if key not in LAYOUTS:
        raise CKDError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    return LAYOUTS[key]


def clean_boxes(boxes: np.ndarray) -> np.ndarray:
    """1-based file boxes -> 0-based, with NaN rows where w <= 0 or h <= 0 (absent target)."""
    out = to_zero_based(boxes)
    out[~((out[:, 2] > 0) & (out[:, 3] > 0))] = np.nan
    return out


def read_ground_truth(path: Path, corners: bool = False, every: int = 1) -> np.ndarray:
    """A benchmark ground-truth file as N x 4 0-based x, y, w, h (NaN rows absent or not annotated)."""
    boxes = read_boxes(path)
    if corners:
        boxes = corners_to_xywh(boxes)
    boxes = clean_boxes(boxes)
    if every > 1:
        sparse = np.full((max(len(boxes) - 1, 0) * every + 1 if len(boxes) else 0, 4), np.nan)
        sparse[::every] = boxes
        boxes = sparse
    return boxes


def _fit(gt: np.ndarray, n: int) -> np.ndarray:
    if len(gt) >= n:
        return gt[:n]
    return np.concatenate([gt, np.full((n - len(gt), 4), np.nan)])


def read_sequence(benchmark: str, seq_dir: Path) -> Sequence:
    """Read one sequence folder of `benchmark` (frame paths and ground truth; images are loaded lazily)."""
    layout = _layout(benchmark)
    seq_dir = Path(seq_dir)
    rgb_dir, tir_dir = seq_dir / layout.rgb_dir, seq_dir / layout.tir_dir
    for folder in (rgb_dir, tir_dir):
        if not folder.is_dir():
            raise CKDError(f"{seq_dir} is not a {benchmark} sequence: missing folder {folder.name}/")
    rgb, tir = number_frames(rgb_dir), number_frames(tir_dir)
    numbers = set(rgb) | set(tir)
    if not numbers:
        raise CKDError(f"{seq_dir}: no numbered frames in {layout.rgb_dir}/ and {layout.tir_dir}/")
    first, last = min(numbers), max(numbers)
    n = last - first + 1
    rgb_frames, tir_frames = [rgb.get(first + k) for k in range(n)], [tir.get(first + k) for k in range(n)]

    gt_path = next((seq_dir / f for f in layout.gt_files if (seq_dir / f).is_file()), None)
    if gt_path is None:
        raise CKDError(f"{seq_dir}: no ground truth ({' or '.join(layout.gt_files)})")
    corners = layout.corners and gt_path.name == layout.gt_files[0]
    gt = read_ground_truth(gt_path, corners=corners, every=layout.every)
    gt_tir = None
    if layout.gt_tir_file and (seq_dir / layout.gt_tir_file).is_file():
        gt_tir = _fit(read_ground_truth(seq_dir / layout.gt_tir_file, layout.corners, layout.every), n)

    holes = [f"{n - len(frames)} in {folder}/" for frames, folder in ((rgb, layout.rgb_dir), (tir, layout.tir_dir))]
    holes = [h for h in holes if not h.startswith("0 ")]
    if holes or abs(len(gt) - n) >= layout.every:
        missing = f"frames missing: {' and '.join(holes)} (pairs go by frame number)" if holes else "no frame missing"
        _log.warning("%s: frames %d..%d, %s; %d ground-truth rows", seq_dir, first, last, missing, len(gt))
    seq = Sequence(seq_dir.name, rgb_frames, tir_frames, _fit(gt, n), gt_tir, first)
    seq.gt_sparse = layout.every > 1 or len(gt) < n  # NaN rows there are also frames nobody annotated
    return seq


def _split_dir(layout: Layout, root: Path, split: str) -> Path:
    aliases = dict(layout.splits).get(split, ())
    for candidate in (split, *aliases):
        if (root / candidate).is_dir():
            return root / candidate
    raise CKDError(f"split {split!r} not found under {root} (looked for {', '.join((split, *aliases))})")


def _sequence_dirs(layout: Layout, base: Path, depth: int = 2) -> list[Path]:
    """Folders holding both modality folders, searching `base` and up to `depth` levels below it."""
    level = [base]
    for _ in range(depth + 1):
        found = [d for d in level if (d / layout.rgb_dir).is_dir() and (d / layout.tir_dir).is_dir()]
        if found:
            return sorted(found, key=lambda p: str(p))
        level = [c for d in level for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    return []


def open_dataset(benchmark: str, root: str | Path, split: str | None = None) -> list[Sequence]:
    """All sequences of `benchmark` under `root` (optionally inside `split`, e.g. LasHeR "test", VTUAV "test_ST").

    `root` may also be a single sequence folder. Raises CKDError when nothing matching the layout is found.
    """
    layout = _layout(benchmark)
    root = Path(root)
    if not root.is_dir():
        raise CKDError(f"{benchmark} root {root} is not a folder")
    base = _split_dir(layout, root, split) if split else root
    dirs = _sequence_dirs(layout, base)
    if not dirs:
        raise CKDError(
            f"no {benchmark} sequences under {base}: expected <seq>/{layout.rgb_dir}/ and <seq>/{layout.tir_dir}/"
        )
    return [read_sequence(benchmark, d) for d in dirs]
