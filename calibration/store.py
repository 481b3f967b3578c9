"""Calibration sets on disk: `.npz` shards of the four named inputs + `calibration.json` (source, seed, count,
input shapes, model, sha256 per shard). Loading verifies hashes, shapes and the model the set was made for."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ckd.atomic import atomic_path
from ckd.errors import CKDError
from ckd.track.backend import INPUT_NAMES

FORMAT = "ckd-calib/1"
MANIFEST = "calibration.json"


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
        made_for = self.model.get("checkpoint_sha256")
        if checkpoint_sha256 and made_for and made_for != checkpoint_sha256:
            raise CKDError(
                f"{where}: made with model {made_for[:24]}, not {checkpoint_sha256[:24]}; recalibrate with this model"
            )

    def batches(self):
        """Yield one dict of the four named arrays per shard (N, 3, H, W)."""
        for shard in self.shards:
            path = self.directory / shard["file"]
            with np.load(path) as data:
                yield {k: np.ascontiguousarray(data[k], dtype=np.float32) for k in INPUT_NAMES}

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
    """Read and verify a calibration set: manifest present, every shard present with its sha256 and shapes."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise CKDError(f"{directory}: calibration folder not found")
    if not path.is_file():
        raise CKDError(f"{directory}: no {MANIFEST} here (empty or not a calibration set; run `ckd calibrate`)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.get("format") != FORMAT:
            raise CKDError(f"{path}: unknown format {d.get('format')!r} (expected {FORMAT!r})")
        cal = CalibrationSet(
            source=str(d["source"]),
            seed=int(d["seed"]),
            count=int(d["count"]),
            inputs={k: [int(x) for x in d["inputs"][k]] for k in INPUT_NAMES},
            model=dict(d["model"]),
            shards=[
                {"file": str(s["file"]), "count": int(s["count"]), "sha256": str(s["sha256"])} for s in d["shards"]
            ],
            created=str(d.get("created", "")),
            directory=directory,
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CKDError(f"{path}: malformed calibration manifest ({type(exc).__name__}: {exc})") from None
    if cal.count <= 0 or not cal.shards or sum(s["count"] for s in cal.shards) != cal.count:
        raise CKDError(f"{path}: {cal.count} samples in {len(cal.shards)} shards; the set is empty or inconsistent")
    for shard in cal.shards:
        file = directory / shard["file"]
        if not file.is_file():
            raise CKDError(f"{file}: calibration shard listed in {MANIFEST} is missing")
        if _sha256(file) != shard["sha256"]:
            raise CKDError(f"{file}: sha256 does not match {MANIFEST}; the shard changed after it was written")
    return cal
