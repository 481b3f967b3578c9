"""What to build and what to keep: rung plans, the `best` precision choice and the fidelity gate (plain functions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ckd.errors import CKDError
from edge.devices import DeviceProfile
from edge.manifest import Manifest, sha256_file
from quantize.fidelity import CropCheck

# INT8 must beat FP16 by this much to be kept under `best` (FP16 is the more faithful of the two).
INT8_MIN_SPEEDUP = 1.05


@dataclass(frozen=True)
class RungPlan:
    """One engine to build: a rung, a precision, its ONNX source and how INT8 is obtained."""

    keep_ratio: float
    precision: str  # fp16 | int8 | fp32
    onnx: Path
    onnx_sha256: str
    int8_source: str = ""  # "qdq" (Q/DQ graph) or "calibration-cache" (fp32 graph + cache, TensorRT 8.x only)
    calibration_cache: Path | None = None
    dla_core: int | None = None
    calibration_sha256: str | None = None
    fp32_layernorm: bool = False  # LayerNorm decomposed (TensorRT 8.5 graphs): its layers are pinned to FP32


def precisions_for(request: str, profile: DeviceProfile) -> tuple[str, ...]:
    """Concrete precisions for a request: `best` builds FP16 and INT8 side by side."""
    if request == "best":
        wanted: tuple[str, ...] = ("fp16", "int8")
    elif request in ("fp16", "int8", "fp32"):
        wanted = (request,)
    else:
        raise CKDError(f"unknown precision {request!r}; choose fp16, int8, best or fp32")
    slow = [p for p in wanted if p not in profile.precisions]
    if slow:
        raise CKDError(f"{profile.name} (sm {profile.compute_capability}) has no fast {', '.join(slow)}")
    return wanted


def check_dla(dla_core: int | None, profile: DeviceProfile, precisions: tuple[str, ...] = ()) -> None:
    """A DLA core the device has, for precisions the DLA runs (FP16 and INT8 only)."""
    if dla_core is None:
        return
    if "fp32" in precisions:
        raise CKDError(f"--dla {dla_core}: the DLA runs FP16 and INT8 only; choose --precision fp16, int8 or best")
    if profile.dla_cores == 0:
        raise CKDError(f"{profile.name} has no DLA; drop --dla")
    if not 0 <= dla_core < profile.dla_cores:
        raise CKDError(f"--dla {dla_core}: {profile.name} has DLA cores 0..{profile.dla_cores - 1}")


def plan_rungs(
    export: Manifest,
    request: str,
    profile: DeviceProfile,
    *,
    int8_export: Manifest | None = None,
    allow_calibration_cache: bool = False,
    dla_core: int | None = None,
) -> list[RungPlan]:
    """Engines to build: for every fp32 rung of `export`, one engine per concrete precision.

    INT8 comes from the Q/DQ rung of the same keep ratio (in `int8_export` or `export` itself); without one,
    from the fp32 graph plus the manifest's calibration cache when `allow_calibration_cache` (TensorRT 8.x),
    except for keep ratios whose INT8 rung failed the fidelity gate (the cache would bypass the gate).
    With no INT8 source at all, `best` plans FP16 only and `int8` is an error.
    """
    precisions = precisions_for(request, profile)
    check_dla(dla_core, profile, precisions)
    fp32 = [r for r in export.rungs if r.precision == "fp32"]
    if not fp32:
        raise CKDError(f"{export.directory}: the export manifest has no fp32 rungs to build from")
    qdq_source = int8_export or export
    cache_file = (qdq_source.calibration or {}).get("cache")
    pinned = (export.target or {}).get("layernorm") == "decomposed"
    plans = []
    for rung in sorted(fp32, key=lambda r: -r.keep_ratio):
        for precision in precisions:
            if precision != "int8":
                plans.append(
                    RungPlan(
                        rung.keep_ratio,
                        precision,
                        export.path(rung),
                        rung.sha256,
                        dla_core=dla_core,
                        fp32_layernorm=pinned,
                    )
                )
                continue
            qdq = [r for r in qdq_source.rungs if r.precision == "int8" and abs(r.keep_ratio - rung.keep_ratio) < 1e-6]
            if qdq:
                plans.append(
                    RungPlan(
                        rung.keep_ratio,
                        "int8",
                        qdq_source.path(qdq[0]),
                        qdq[0].sha256,
                        "qdq",
                        dla_core=dla_core,
                        fp32_layernorm=(qdq_source.target or {}).get("layernorm") == "decomposed",
                    )
                )
            elif qdq_source.gate_failed_at(rung.keep_ratio):
                if request == "best":
                    continue  # its INT8 rung failed the gate: no calibration-cache INT8 either
                raise CKDError(
                    f"no INT8 source for keep ratio {rung.keep_ratio:.2f}: its INT8 rung failed the fidelity gate "
                    f"({qdq_source.directory}); --precision best builds FP16 for it"
                )
            elif allow_calibration_cache and cache_file:
                cache = qdq_source.calibration_cache()  # a plain, checksummed file beside the manifest
                plans.append(
                    RungPlan(
                        rung.keep_ratio,
                        "int8",
                        export.path(rung),
                        rung.sha256,
                        "calibration-cache",
                        cache,
                        dla_core,
                        sha256_file(cache),
                        pinned,
                    )
                )
            elif request == "best":
                continue  # no INT8 source: `best` is FP16 alone (build_all says so)
            else:
                raise CKDError(
                    f"no INT8 source for keep ratio {rung.keep_ratio:.2f}: run `ckd quantize` (Q/DQ rungs)"
                    + (" or give a calibration cache" if allow_calibration_cache else "")
                )
    return plans


@dataclass(frozen=True)
class Candidate:
    """A built engine measured on the device."""

    keep_ratio: float
    precision: str
    gpu_ms: float  # median GPU latency
    fidelity: CropCheck  # the per-crop check of `ckd quantize --gate` against the fp32 reference outputs


def gate_reason(c: Candidate) -> str:
    """One line: why an engine fails the fidelity gate."""
    return f"fidelity gate: {c.fidelity}"


def choose_best(candidates: list[Candidate]) -> dict[float, Candidate]:
    """Per rung, the engine to keep: fastest that passes the gate; INT8 only if clearly faster than FP16.
    A rung where nothing passes has no entry (its failures are reported by the caller)."""
    by_rung: dict[float, list[Candidate]] = {}
    for c in candidates:
        by_rung.setdefault(round(c.keep_ratio, 4), []).append(c)
    chosen = {}
    for ratio, group in sorted(by_rung.items()):
        passing = [c for c in group if c.fidelity.passed]
        if not passing:
            continue
        fp16 = next((c for c in passing if c.precision == "fp16"), None)
        int8 = next((c for c in passing if c.precision == "int8"), None)
        if fp16 and int8:
            chosen[ratio] = int8 if int8.gpu_ms * INT8_MIN_SPEEDUP <= fp16.gpu_ms else fp16
        else:
            chosen[ratio] = min(passing, key=lambda c: c.gpu_ms)
    return chosen
