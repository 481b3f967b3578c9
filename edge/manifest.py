"""The export manifest: `manifest.json` beside the ONNX rungs, naming every file with its sha256.

Written by `ckd export` / `ckd quantize`, read by every edge consumer (ONNX Runtime and TensorRT
backends, the engine builder, the flash bundle). `Manifest.load` verifies checksums, so a file
changed after export is caught before anything is built from it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ckd import __version__
from ckd.atomic import write_text_atomic
from ckd.errors import CKDError
from ckd.model.config import CKDConfig

FORMAT = "ckd-onnx/1"
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def rung_filename(keep_ratio: float, precision: str = "fp32") -> str:
    """Conventional file name of a rung: `ckd_k0.70.onnx` (fp32) or `ckd_k0.70_int8.onnx`."""
    suffix = "" if precision == "fp32" else f"_{precision}"
    return f"ckd_k{keep_ratio:.2f}{suffix}.onnx"


@dataclass(frozen=True)
class Rung:
    """One exported graph: a fixed candidate-elimination keep ratio at one precision."""

    keep_ratio: float
    file: str
    sha256: str
    precision: str = "fp32"

    @classmethod
    def from_file(cls, path: str | Path, keep_ratio: float, precision: str = "fp32") -> Rung:
        """A rung for an existing file (sha256 computed now); `file` is its name, relative to the manifest."""
        return cls(float(keep_ratio), Path(path).name, sha256_file(path), precision)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise CKDError(f"rung {self.file}: precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not 0.0 < float(self.keep_ratio) <= 1.0:
            raise CKDError(f"rung {self.file}: keep ratio {self.keep_ratio} is not in (0, 1]")


@dataclass
class Manifest:
    """What was exported, from which checkpoint, with which tensors, in which files.

    `calibration` (optional) describes INT8 calibration; its `cache` key, when present, names a TensorRT
    calibration cache file beside the manifest (used by `ckd build` on TensorRT 8.x without Q/DQ rungs).
    """

    config: dict
    checkpoint_sha256: str
    opset: int
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]
    rungs: list[Rung]
    calibration: dict | None = None
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    kit_version: str = __version__
    format: str = FORMAT
    directory: Path | None = field(default=None, compare=False, repr=False)

    @property
    def ckd_config(self) -> CKDConfig:
        return CKDConfig.from_dict(self.config)

    @property
    def keep_ratios(self) -> tuple[float, ...]:
        return tuple(sorted({r.keep_ratio for r in self.rungs}))

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "config": self.config,
            "checkpoint_sha256": self.checkpoint_sha256,
            "opset": self.opset,
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "outputs": {k: list(v) for k, v in self.outputs.items()},
            "rungs": [asdict(r) for r in self.rungs],
            "calibration": self.calibration,
            "created": self.created,
            "kit_version": self.kit_version,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = MANIFEST_NAME) -> Manifest:
        if d.get("format") != FORMAT:
            raise CKDError(f"{source}: unknown manifest format {d.get('format')!r} (expected {FORMAT!r})")
        try:
            rungs = [
                Rung(float(r["keep_ratio"]), str(r["file"]), str(r["sha256"]), str(r.get("precision", "fp32")))
                for r in d["rungs"]
            ]
            return cls(
                config=dict(d["config"]),
                checkpoint_sha256=str(d["checkpoint_sha256"]),
                opset=int(d["opset"]),
                inputs={k: [int(x) for x in v] for k, v in d["inputs"].items()},
                outputs={k: [int(x) for x in v] for k, v in d["outputs"].items()},
                rungs=rungs,
                calibration=d.get("calibration"),
                created=str(d.get("created", "")),
                kit_version=str(d.get("kit_version", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CKDError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from None

    def save(self, directory: str | Path) -> Path:
        """Write `manifest.json` into `directory` atomically; returns its path."""
        path = Path(directory) / MANIFEST_NAME
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        self.directory = Path(directory)
        return path

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> Manifest:
        """Read `directory/manifest.json`; with `verify`, check every rung file exists and matches its sha256."""
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise CKDError(f"{path}: no export manifest here (run `ckd export` first)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CKDError(f"{path}: bad JSON at line {exc.lineno}: {exc.msg}") from None
        except OSError as exc:
            raise CKDError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if not isinstance(data, dict):
            raise CKDError(f"{path}: expected a JSON object")
        manifest = cls.from_dict(data, str(path))
        manifest.directory = directory
        if verify:
            manifest.verify()
        return manifest

    def verify(self) -> None:
        """Raise CKDError naming the first rung file that is missing or whose sha256 differs."""
        for rung in self.rungs:
            path = self.path(rung)
            if not path.is_file():
                raise CKDError(f"{path}: rung file listed in {MANIFEST_NAME} is missing")
            actual = sha256_file(path)
            if actual != rung.sha256:
                raise CKDError(
                    f"{path}: sha256 mismatch (manifest {rung.sha256[:12]}…, file {actual[:12]}…); re-export it"
                )

    def path(self, rung: Rung) -> Path:
        """Absolute location of a rung's file (relative to the manifest's directory)."""
        if self.directory is None:
            raise CKDError("manifest has no directory: save() or load() it first")
        return self.directory / rung.file

    def rung(self, keep_ratio: float | None = None, precision: str | None = None, exact: bool = False) -> Rung:
        """The rung for a keep ratio (None: the config's default), nearest unless `exact`.

        With `precision`, only rungs of that precision are considered.
        """
        candidates = [r for r in self.rungs if precision is None or r.precision == precision]
        if not candidates:
            have = ", ".join(sorted({r.precision for r in self.rungs})) or "none"
            raise CKDError(f"manifest has no {precision} rung (has: {have})")
        if keep_ratio is None:
            keep_ratio = float(self.config.get("ce_keep_ratio", candidates[0].keep_ratio))
        best = min(candidates, key=lambda r: (abs(r.keep_ratio - keep_ratio), -r.keep_ratio))
        if exact and abs(best.keep_ratio - keep_ratio) > 1e-6:
            have = ", ".join(f"{r:.2f}" for r in sorted({c.keep_ratio for c in candidates}))
            raise CKDError(f"no exported rung with keep ratio {keep_ratio:.2f} (rungs: {have})")
        return best
