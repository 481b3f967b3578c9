"""Calibration sets on disk: `.npz` shards of the four named inputs + `calibration.json` (source, seed, count,
input shapes, model, sha256 per shard). Loading checks every field, every shard's name (a plain file name),
sha256, array names, dtypes and shapes, and the model the set was made for; reading a shard checks its values."""

from __future__ import annotations

import datetime as _dt
import json
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ckd.atomic import atomic_path
from ckd.errors import CKDError
from ckd.safe_paths import file_in, plain_name
from ckd.track.backend import INPUT_NAMES

FORMAT = "ckd-calib/1"
MANIFEST = "calibration.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256(path: Path) -> str:
    from ckd.model.checkpoint import file_sha256

    return file_sha256(path)


@dataclass
class CalibrationSet:
    """A calibration set's manifest; `directory` is where it lives."""

    source: str
    seed: int
    count: int
    inputs: dict[str, list[int]]  # per-sample shapes (batch 1), as the export manifest's `inputs`
    model: dict  # {"name", "checkpoint_sha256"} of the model that tracked while sampling
    shards: list[dict] = field(default_factory=list)  # {"file", "count", "sha256"}
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    format: str = FORMAT
    directory: Path | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("directory")
        return d

    def check_model(self, inputs: dict[str, list[int]], checkpoint_sha256: str | None = None) -> None:
        """Refuse a set made for another input size or (when given) another checkpoint."""
        where = self.directory / MANIFEST if self.directory else MANIFEST
        mine = {k: list(v) for k, v in self.inputs.items()}
        theirs = {k: list(v) for k, v in inputs.items()}
        if mine != theirs:
            raise CKDError(f"{where}: made for inputs {mine}, but this model takes {theirs}; recalibrate")
        made_for = self.model["checkpoint_sha256"]  # never empty: load_calibration refuses that
        if checkpoint_sha256 and made_for != checkpoint_sha256:
            raise CKDError(
                f"{where}: made with model {made_for[:24]}, not {checkpoint_sha256[:24]}; recalibrate with this model"
            )

    def batches(self):
        """Yield one dict of the four named arrays per shard (N, 3, H, W)."""
        for shard in self.shards:
            path = file_in(self.directory, shard["file"], MANIFEST)
            try:
                with np.load(path, allow_pickle=False) as data:
                    batch = {k: np.ascontiguousarray(data[k], dtype=np.float32) for k in INPUT_NAMES}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                raise CKDError(f"{path}: unreadable calibration shard ({type(exc).__name__}: {exc})") from None
            for k, arr in batch.items():
                if arr.shape != (shard["count"], *self.inputs[k][1:]):
                    raise CKDError(f"{path}: {k} has shape {arr.shape}, {MANIFEST} says {shard['count']} samples")
                if not np.isfinite(arr).all():
                    raise CKDError(f"{path}: {k} holds NaN or infinite values")
            yield batch

    def samples(self):
        """Yield one batch-1 dict of the four named inputs per calibration sample."""
        for batch in self.batches():
            for i in range(batch[INPUT_NAMES[0]].shape[0]):
                yield {k: batch[k][i : i + 1] for k in INPUT_NAMES}


def _atomic(path: Path, write, suffix: str = ".tmp") -> None:
    """`write(tmp)` beside `path`, then rename over it; the temp file never survives an error."""
    with atomic_path(path, suffix=suffix) as tmp:
        write(str(tmp))


def write_calibration(
    out: str | Path,
    crops: dict[str, np.ndarray],
    source: str,
    seed: int,
    model: dict,
    shard_size: int = 64,
) -> CalibrationSet:
    """Write shards then the manifest (last, atomically): a reader never sees a set without all its shards."""
    out = Path(out)
    count = int(crops[INPUT_NAMES[0]].shape[0]) if crops else 0
    if count == 0:
        raise CKDError(f"{out}: no calibration crops were produced (no usable frames in the source)")
    out.mkdir(parents=True, exist_ok=True)
    cal = CalibrationSet(
        source=source,
        seed=int(seed),
        count=count,
        inputs={k: [1, *crops[k].shape[1:]] for k in INPUT_NAMES},
        model=model,
        directory=out,
    )
    for n, start in enumerate(range(0, count, shard_size)):
        path = out / f"shard_{n:04d}.npz"
        part = {k: crops[k][start : start + shard_size] for k in INPUT_NAMES}
        _atomic(path, lambda tmp, part=part: np.savez(tmp, **part), suffix=".npz")
        cal.shards.append({"file": path.name, "count": int(part[INPUT_NAMES[0]].shape[0]), "sha256": _sha256(path)})
    text = json.dumps(cal.to_dict(), indent=2) + "\n"
    _atomic(out / MANIFEST, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return cal


def load_calibration(directory: str | Path) -> CalibrationSet:
    """Read and verify a calibration set: every manifest field, and every shard present with its sha256,
    array names, dtypes and shapes (headers only; values are checked as `batches` reads them)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise CKDError(f"{directory}: calibration folder not found")
    if not path.is_file():
        raise CKDError(f"{directory}: no {MANIFEST} here (empty or not a calibration set; run `ckd calibrate`)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise CKDError(
                f"{path}: unknown format {d.get('format') if isinstance(d, dict) else d!r} (expected {FORMAT!r})"
            )
        cal = CalibrationSet(
            source=str(d["source"]),
            seed=int(d["seed"]),
            count=int(d["count"]),
            inputs={k: [int(x) for x in d["inputs"][k]] for k in INPUT_NAMES},
            model=dict(d["model"]),
            shards=[{"file": s["file"], "count": int(s["count"]), "sha256": str(s["sha256"])} for s in d["shards"]],
            created=str(d.get("created", "")),
            directory=directory,
        )
    except (
        json.JSONDecodeError,
        UnicodeDecodeError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        OverflowError,
    ) as exc:
        raise CKDError(f"{path}: malformed calibration manifest ({type(exc).__name__}: {exc})") from None
    _check_fields(cal, path)
    for shard in cal.shards:
        file = file_in(directory, shard["file"], MANIFEST)
        if _sha256(file) != shard["sha256"]:
            raise CKDError(f"{file}: sha256 does not match {MANIFEST}; the shard changed after it was written")
        _check_shard_headers(file, shard["count"], cal.inputs)
    return cal


def _check_fields(cal: CalibrationSet, path: Path) -> None:
    if cal.count <= 0 or not cal.shards or sum(s["count"] for s in cal.shards) != cal.count:
        raise CKDError(f"{path}: {cal.count} samples in {len(cal.shards)} shards; the set is empty or inconsistent")
    for k, shape in cal.inputs.items():
        if len(shape) != 4 or shape[:2] != [1, 3] or min(shape) <= 0:
            raise CKDError(f"{path}: input {k} has shape {shape}, expected [1, 3, H, W]")
    made_for = cal.model.get("checkpoint_sha256")
    if not isinstance(made_for, str) or not made_for:
        raise CKDError(f"{path}: the model record names no checkpoint_sha256, so the set cannot be matched to a model")
    files = [plain_name(s["file"], str(path)) for s in cal.shards]
    if len(set(files)) != len(files):
        raise CKDError(f"{path}: a shard is listed twice")
    for s in cal.shards:
        if s["count"] <= 0 or not _SHA256.fullmatch(s["sha256"]):
            raise CKDError(f"{path}: shard {s['file']!r} has count {s['count']} and sha256 {s['sha256']!r:.20}")


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of one array file of an .npz, without reading its data."""
    major, _ = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, _fortran, dtype = read(f)
    return shape, dtype


def _check_shard_headers(path: Path, count: int, inputs: dict[str, list[int]]) -> None:
    """The shard is an .npz holding the four inputs as float32 arrays of (count, 3, H, W): read from the headers."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as f:
                    headers[Path(info.filename).stem] = _npy_header(f)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CKDError(f"{path}: not a readable .npz calibration shard ({type(exc).__name__}: {exc})") from None
    for k in INPUT_NAMES:
        if k not in headers:
            raise CKDError(f"{path}: no {k} array (has {', '.join(sorted(headers)) or 'none'})")
        shape, dtype = headers[k]
        want = (count, *inputs[k][1:])
        if shape != want or dtype != np.float32:
            raise CKDError(f"{path}: {k} is {dtype} {shape}, expected float32 {want}")
