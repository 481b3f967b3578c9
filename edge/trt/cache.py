"""Engine cache: TensorRT engines are tied to the model, TensorRT version and GPU, so each is stored with its key.

An engine `ckd_k0.70_fp16.engine` sits beside `ckd_k0.70_fp16.engine.json` holding the key (sha256 of the graph
it was built from, the FP32 graph or the Q/DQ graph; rung; precision; sha256 of the calibration cache for the
TensorRT 8.x calibrator route; TensorRT version; device; compute capability; DLA core) and the engine's own
sha256. `check` compares the stored key field by field and says in one line why an engine must be rebuilt;
`load` reads the engine once and verifies the very bytes it returns.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from ckd.atomic import write_bytes_atomic, write_text_atomic
from ckd.errors import CKDError
from ckd.safe_paths import plain_name


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on."""

    model_sha256: str  # sha256 of the ONNX graph it was built from
    keep_ratio: float
    precision: str  # fp16 | int8 | fp32
    tensorrt: str
    device: str
    compute_capability: str
    dla_core: int | None = None
    calibration_sha256: str | None = None  # INT8 from an FP32 graph + calibration cache (TensorRT 8.x)

    @classmethod
    def from_record(cls, record: object, source: str) -> EngineKey:
        """A key read from JSON (a cache record or selection.json); CKDError naming `source` when malformed."""
        types = {"keep_ratio": (int, float), "dla_core": (int, type(None)), "calibration_sha256": (str, type(None))}
        names = [f.name for f in fields(cls)]
        if not isinstance(record, dict) or set(record) - set(names):
            raise CKDError(f"{source}: malformed engine key {str(record)[:80]!r} (run `ckd build`)")
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [n for n in required if n not in record]
        bad = [n for n, v in record.items() if not isinstance(v, types.get(n, str)) or isinstance(v, bool)]
        if missing or bad:
            raise CKDError(f"{source}: malformed engine key ({', '.join(missing + bad)}) (run `ckd build`)")
        return cls(**record)

    @property
    def stem(self) -> str:
        """File stem: rung, precision and DLA core (the rest lives in the sidecar and is checked)."""
        dla = "" if self.dla_core is None else f"_dla{self.dla_core}"
        return f"ckd_k{self.keep_ratio:.2f}_{self.precision}{dla}"


@dataclass(frozen=True)
class CacheCheck:
    """Outcome of looking up a key: `ok` with the engine path, or the reason to rebuild."""

    path: Path
    ok: bool
    reason: str


def engine_path(cache_dir: str | Path, key: EngineKey) -> Path:
    """Where an engine lives; a key read from a record (selection.json) cannot name a path outside the cache."""
    return Path(cache_dir) / plain_name(f"{key.stem}.engine", "engine key")


def _meta_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def timing_cache_path(cache_dir: str | Path, tensorrt: str, device: str) -> Path:
    """One persistent timing cache per TensorRT version and device (shared by all rungs and precisions)."""
    slug = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in f"{device}_trt{tensorrt}")
    return Path(cache_dir) / f"timing_{slug}.cache"


def lookup(cache_dir: str | Path, key: EngineKey) -> tuple[CacheCheck, bytes]:
    """(verdict, engine bytes): the engine is read once and the checksum is of exactly those bytes."""
    path = engine_path(cache_dir, key)
    meta_file = _meta_path(path)
    if not path.is_file() or not meta_file.is_file():
        return CacheCheck(path, False, f"{path.name}: not built yet"), b""
    try:
        meta = json.loads(meta_file.read_text())
        stored = meta["key"]
        changed = [
            f"{f.name} {stored.get(f.name)!r} -> {getattr(key, f.name)!r}"
            for f in fields(EngineKey)
            if stored.get(f.name) != getattr(key, f.name)
        ]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return CacheCheck(path, False, f"{meta_file.name}: unreadable cache record, rebuilding"), b""
    if changed:
        return CacheCheck(path, False, f"{path.name}: rebuilding, {'; '.join(changed)}"), b""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        return CacheCheck(path, False, f"{path.name}: unreadable ({exc.strerror}), rebuilding"), b""
    if hashlib.sha256(blob).hexdigest() != meta.get("engine_sha256"):
        return CacheCheck(path, False, f"{path.name}: engine file checksum does not match its record, rebuilding"), b""
    return CacheCheck(path, True, f"{path.name}: cached engine matches"), blob


def check(cache_dir: str | Path, key: EngineKey) -> CacheCheck:
    """Is there a usable engine for `key`? Verifies the stored key and the engine file's checksum."""
    return lookup(cache_dir, key)[0]


def store(cache_dir: str | Path, key: EngineKey, engine: bytes, extra: dict | None = None) -> Path:
    """Write an engine and its key record atomically (engine first, so a record never names a missing file)."""
    path = engine_path(cache_dir, key)
    write_bytes_atomic(path, engine)
    record = {
        "key": asdict(key),
        "engine_sha256": hashlib.sha256(engine).hexdigest(),
        "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    write_text_atomic(_meta_path(path), json.dumps(record, indent=2) + "\n")
    return path


def load(cache_dir: str | Path, key: EngineKey) -> bytes:
    """The verified engine bytes for `key` (read once, hashed, returned), or CKDError with the reason."""
    result, blob = lookup(cache_dir, key)
    if not result.ok:
        raise CKDError(f"{result.reason} (run `ckd build`)")
    return blob


def record(cache_dir: str | Path, key: EngineKey) -> dict:
    """The stored record of a cached engine (key, checksum, build details such as timings)."""
    return json.loads(_meta_path(engine_path(cache_dir, key)).read_text())
