"""The export manifest: `manifest.json` beside the ONNX rungs, naming every file with its sha256.

Written by `ckd export` / `ckd quantize`, read by every edge consumer (ONNX Runtime and TensorRT
backends, the engine builder, the flash bundle). `Manifest.load` checks every field (a complete config,
the CKD tensor names with the shapes the config implies, at least one rung, plain file names) and verifies
checksums, so a file changed after export is caught before anything is built from it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ckd import __version__
from ckd.atomic import write_text_atomic
from ckd.errors import CKDError
from ckd.model.config import CKDConfig
from ckd.safe_paths import file_in, plain_name
from ckd.track.backend import input_shapes, output_shapes

FORMAT = "ckd-onnx/1"
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    `target` (optional) names what the graphs are for: `{"tensorrt": ["8.6", "10"], "layernorm": "node"}`
    (`edge.trt.targets`); None for exports older than that.
    `gate` (optional, `ckd quantize --gate`) is the fidelity gate's verdict: `passed` keep ratios, `failed`
    [{keep_ratio, failures}] (those rungs are not in `rungs`: nothing can run them), `thresholds`, `report`;
    `{"pending": true}` while the gate runs (refused like a failure).
    """

    config: dict
    checkpoint_sha256: str
    opset: int
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]
    rungs: list[Rung]
    calibration: dict | None = None
    target: dict | None = None
    gate: dict | None = None
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
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
            "target": self.target,
            **({"gate": self.gate} if self.gate is not None else {}),
            "created": self.created,
            "kit_version": self.kit_version,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = MANIFEST_NAME) -> Manifest:
        """A manifest from its JSON object, every field checked; CKDError naming `source` and the problem."""
        if d.get("format") != FORMAT:
            raise CKDError(f"{source}: unknown manifest format {d.get('format')!r} (expected {FORMAT!r})")
        try:
            cfg = CKDConfig.from_record(d["config"], source)
            rungs = [
                Rung(float(r["keep_ratio"]), str(r["file"]), str(r["sha256"]), str(r.get("precision", "fp32")))
                for r in d["rungs"]
            ]
            manifest = cls(
                config=dict(d["config"]),
                checkpoint_sha256=str(d["checkpoint_sha256"]),
                opset=int(d["opset"]),
                inputs={k: [int(x) for x in v] for k, v in d["inputs"].items()},
                outputs={k: [int(x) for x in v] for k, v in d["outputs"].items()},
                rungs=rungs,
                calibration=d.get("calibration"),
                target=d.get("target"),
                gate=dict(d["gate"]) if d.get("gate") is not None else None,
                created=str(d.get("created", "")),
                kit_version=str(d.get("kit_version", "")),
            )
            manifest.failed_gate()  # a malformed gate record is a malformed manifest
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CKDError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from None
        manifest.check(cfg, source)
        return manifest

    def check(self, cfg: CKDConfig, source: str) -> None:
        """Fields that must agree: tensors as the config implies, rungs named and hashed, the calibration cache."""
        for what, have, want in (
            ("inputs", self.inputs, input_shapes(cfg.template_size, cfg.search_size)),
            ("outputs", self.outputs, output_shapes(cfg.feat_size)),
        ):
            want = {k: list(v) for k, v in want.items()}
            if have != want:
                raise CKDError(f"{source}: {what} {have} are not the CKD tensors of this config {want}")
        if not self.rungs and not self.failed_gate():  # no rungs left after a failed gate: `verify` says so
            raise CKDError(f"{source}: lists no rungs")
        if not self.checkpoint_sha256:
            raise CKDError(f"{source}: checkpoint_sha256 is empty")
        seen = set()
        for rung in self.rungs:
            if not plain_name(rung.file, source).endswith(".onnx"):
                raise CKDError(f"{source}: rung file {rung.file!r} is not an .onnx file")
            if not _SHA256.fullmatch(rung.sha256):
                raise CKDError(f"{source}: rung {rung.file} has no sha256 (got {rung.sha256!r:.20})")
            for key in (rung.file, (round(rung.keep_ratio, 6), rung.precision)):
                if key in seen:
                    raise CKDError(f"{source}: rung {rung.file} is listed twice")
                seen.add(key)
        if self.calibration is not None and not isinstance(self.calibration, dict):
            raise CKDError(f"{source}: calibration must be a JSON object")
        cache = (self.calibration or {}).get("cache")
        if cache is not None:
            plain_name(cache, source)
            if not _SHA256.fullmatch(str(self.calibration.get("cache_sha256", ""))):
                raise CKDError(f"{source}: calibration cache {cache!r} has no cache_sha256; it cannot be verified")

    def save(self, directory: str | Path) -> Path:
        """Write `manifest.json` into `directory` atomically (after the checks `load` makes); returns its path."""
        path = Path(directory) / MANIFEST_NAME
        self.check(CKDConfig.from_record(self.config, str(path)), str(path))
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        self.directory = Path(directory)
        return path

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> Manifest:
        """Read and check `directory/manifest.json`; with `verify`, every listed file exists and matches its sha256."""
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise CKDError(f"{path}: no export manifest here (run `ckd export` first)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CKDError(f"{path}: bad JSON at line {exc.lineno}: {exc.msg}") from None
        except UnicodeDecodeError:
            raise CKDError(f"{path}: not UTF-8 text") from None
        except OSError as exc:
            raise CKDError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if not isinstance(data, dict):
            raise CKDError(f"{path}: expected a JSON object")
        manifest = cls.from_dict(data, str(path))
        manifest.directory = directory
        if verify:
            manifest.verify()
        return manifest

    def failed_gate(self) -> dict[float, list[str]]:
        """Keep ratios whose rung failed the fidelity gate (and was removed from `rungs`), with the reasons."""
        failed = (self.gate or {}).get("failed") or []
        return {float(f["keep_ratio"]): [str(x) for x in f.get("failures", [])] for f in failed}

    def gate_failed_at(self, keep_ratio: float) -> bool:
        """True when the fidelity gate removed this keep ratio's rung."""
        return any(abs(k - keep_ratio) < 1e-6 for k in self.failed_gate())

    def model_identity(self) -> dict:
        """The model these graphs come from, as calibration sets record it (`calibration.store`)."""
        return {"name": self.config.get("name", "?"), "checkpoint_sha256": self.checkpoint_sha256}

    def gate_note(self) -> str | None:
        """One line naming the rungs the fidelity gate removed from this folder, or None."""
        failed = self.failed_gate()
        if not failed:
            return None
        where = f" (see {self.gate['report']})" if self.gate.get("report") else ""
        return f"{self.directory}: rungs {', '.join(f'{k:.2f}' for k in failed)} failed the fidelity gate{where}"

    def verify(self) -> None:
        """Raise CKDError naming the first listed file (rung or calibration cache) that is missing, not a regular
        file, or whose sha256 differs, or saying that the fidelity gate failed every rung or never finished."""
        if (self.gate or {}).get("pending"):
            raise CKDError(
                f"{self.directory}: the fidelity gate never finished on these rungs (interrupted `ckd quantize "
                "--gate`?); quantize again"
            )
        if not self.rungs:
            failed = self.failed_gate()
            worst = "; ".join(next(iter(failed.values()), []))[:200]
            raise CKDError(
                f"{self.directory}: every rung failed the fidelity gate ({', '.join(f'{k:.2f}' for k in failed)}: "
                f"{worst or 'see the gate report'}); nothing here may run"
            )
        for name, digest in self.files().items():
            path = file_in(self._dir(), name, MANIFEST_NAME)
            actual = sha256_file(path)
            if actual != digest:
                raise CKDError(f"{path}: sha256 mismatch (manifest {digest[:12]}…, file {actual[:12]}…); re-export it")

    def files(self) -> dict[str, str]:
        """Every file the manifest lists (rungs, then the calibration cache), name -> sha256."""
        listed = {r.file: r.sha256 for r in self.rungs}
        if (self.calibration or {}).get("cache"):
            listed[self.calibration["cache"]] = self.calibration["cache_sha256"]
        return listed

    def _dir(self) -> Path:
        if self.directory is None:
            raise CKDError("manifest has no directory: save() or load() it first")
        return self.directory

    def path(self, rung: Rung) -> Path:
        """Location of a rung's file beside the manifest (a plain file name; a symlink or FIFO there is refused)."""
        return file_in(self._dir(), rung.file, MANIFEST_NAME)

    def calibration_cache(self) -> Path | None:
        """Location of the TensorRT calibration cache the manifest lists, if any (same rule as `path`)."""
        cache = (self.calibration or {}).get("cache")
        return file_in(self._dir(), cache, MANIFEST_NAME) if cache else None

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
