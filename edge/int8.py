"""INT8 for an export folder: quantize every rung with a calibration set, and the FP32-vs-INT8 fidelity gate.

`quantize_export` writes `ckd_k<r>_int8.onnx` per rung + a manifest (precision int8, calibration provenance, the
CPU target, INT8 format and precision tier) into a new folder; each graph is audited against its tier's policy
before it is kept. `fidelity` runs the FP32 and INT8 trackers (ONNX Runtime) side by side over evaluation clips
and scores their agreement per rung.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from calibration.sampler import Tap
from calibration.sources import Clip
from calibration.store import MANIFEST as CALIB_MANIFEST
from calibration.store import load_calibration
from calibration.trt_cache import write_cache
from ckd.atomic import atomic_path, write_bytes_atomic
from ckd.errors import CKDError
from edge.export import check_rung
from edge.manifest import MANIFEST_NAME, Manifest, Rung, rung_filename, sha256_file
from edge.trt.targets import drop_stale_subexports, graph_target
from quantize.cpu_target import FORMAT_FOR_TARGET, resolve_target
from quantize.fidelity import RungFidelity, Thresholds, cosine, rung_fidelity
from quantize.policy import check_policy
from quantize.policy import tier as policy_tier
from quantize.ptq import quantize_rung
from quantize.trt_qdq import activation_scales, quantize_trt

FORMATS = ("ort", "trt")
CACHE_NAME = "calib.cache"  # TensorRT 8.x calibration cache written beside TensorRT Q/DQ graphs
CACHE_TENSORRT = "8.5.2"  # the header's version; `ckd build` restamps it with the device's TensorRT


def quantize_export(
    onnx_dir: str | Path,
    calib_dir: str | Path,
    out_dir: str | Path,
    keep_ratios: Sequence[float] | None = None,
    engine: str = "ort",
    method: str = "percentile",
    progress: bool = False,
    fmt: str = "ort",
    cpu_target: str = "auto",
    tier: str = "conservative",
) -> Manifest:
    """Quantize the FP32 rungs of `onnx_dir` (all, or `keep_ratios`) into `out_dir`; manifest written last.

    `fmt` "ort": the ONNX Runtime CPU graphs (`quantize.ptq`) in the INT8 format exact on `cpu_target` ("auto" =
    this machine, or vnni / avx2 / arm; `quantize.cpu_target`) with the precision tier `tier`
    (`quantize.policy.TIERS`). "trt": TensorRT's symmetric INT8 Q/DQ (`quantize.trt_qdq`) for the TensorRT
    generations of the export, checked by `edge.trt.lint`, with the `trt8.5/` sub-export when the export has one
    and a calibration cache for the TensorRT 8.x route. TensorRT and Model Optimizer graphs are S8S8 (full-range
    weights) and conservative.
    """
    import onnx
    from tqdm import tqdm

    if fmt not in FORMATS:
        raise CKDError(f"unknown INT8 format {fmt!r}; choose from {', '.join(FORMATS)}")
    target = resolve_target(cpu_target)
    ort_graphs = fmt == "ort" and engine == "ort"
    int8_format = FORMAT_FOR_TARGET[target] if ort_graphs else "s8s8"
    policy = policy_tier(tier if ort_graphs else "conservative")

    src = Manifest.load(onnx_dir)
    cal = load_calibration(calib_dir)
    cal.check_model(src.inputs, src.checkpoint_sha256)
    rungs = [src.rung(k, "fp32", exact=True) for k in keep_ratios] if keep_ratios else src.rungs
    rungs = [r for r in rungs if r.precision == "fp32"]
    if not rungs:
        raise CKDError(f"{onnx_dir}: no fp32 rungs to quantize")
    for rung in rungs:
        check_rung(src, rung)  # a truncated or foreign graph is one line here, not a quantizer traceback
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # a failed re-run must not leave an old manifest behind
    done = []
    for rung in tqdm(rungs, desc="quantize", unit="rung", disable=not progress):
        dst = out_dir / rung_filename(rung.keep_ratio, "int8")
        with atomic_path(dst) as tmp:
            if fmt == "trt":
                quantize_trt(src.path(rung), tmp, cal, method)
            else:
                quantize_rung(src.path(rung), tmp, cal, engine, method, int8_format, policy.name)
            audit = check_policy(onnx.load(str(tmp)), policy.rules)
            if audit["violations"]:
                raise CKDError(f"{dst.name}: precision policy violated by {', '.join(audit['violations'][:5])}")
            if not audit["int8"]:
                raise CKDError(f"{dst.name}: the quantizer produced no INT8 node")
        done.append(Rung.from_file(dst, rung.keep_ratio, "int8"))
    manifest = dataclasses.replace(
        src,
        rungs=done,
        calibration={
            "source": cal.source,
            "seed": cal.seed,
            "count": cal.count,
            "manifest_sha256": sha256_file(Path(calib_dir) / CALIB_MANIFEST),
            "engine": engine,
            "method": method,
            "format": fmt,
            "cpu_target": target,
            "int8_format": int8_format,
            "tier": policy.name,
        },
        directory=None,
    )
    if fmt == "ort":
        manifest.target = graph_target(())
        drop_stale_subexports(out_dir)
        manifest.save(out_dir)
        return manifest
    return _trt_targets(manifest, src, out_dir)


def _trt_targets(manifest: Manifest, src: Manifest, out_dir: Path) -> Manifest:
    """TensorRT INT8 folder: the calibration cache (from the Q/DQ scales), the lint, the sub-exports, the manifest."""
    import onnx

    from edge.export import write_target_exports
    from edge.trt.targets import split_targets

    scales = {}
    for rung in manifest.rungs:
        scales |= activation_scales(onnx.load(str(out_dir / rung.file)))
    write_bytes_atomic(out_dir / CACHE_NAME, write_cache(scales, CACHE_TENSORRT))
    manifest.calibration["cache"] = CACHE_NAME
    manifest.calibration["cache_sha256"] = sha256_file(out_dir / CACHE_NAME)
    gens = (src.target or {}).get("tensorrt") or []
    subs = [g for g in ("8.5",) if (src.directory / f"trt{g}" / MANIFEST_NAME).is_file()]
    main, _ = split_targets(gens)
    if not main:
        raise CKDError(f"{src.directory}: not exported for TensorRT (re-export with `ckd export --trt all`)")
    manifest.target = graph_target(main)
    write_target_exports(manifest, out_dir, subs)
    return manifest


def _score_tap(backend) -> Tap:
    """The backend, keeping a copy of its latest score map in `.score` (the next run overwrites the outputs)."""
    tap = Tap(backend, lambda _inputs, out: setattr(tap, "score", out["score_map"].copy()))
    return tap


def _run_clip(fp32: Tap, int8: Tap, clip: Clip, keep_ratio: float) -> dict[str, object]:
    """Track one clip three ways: FP32, INT8 in lockstep (re-seeded each frame with the FP32 state, so both crop
    the same pixels) and INT8 free-running. Boxes have row 0 = the init box; cosines compare lockstep score maps."""
    from ckd.track.tracker import Tracker

    ref, lock, free = Tracker(fp32), Tracker(int8), Tracker(int8)
    rgb, tir = clip.load(0)
    for t in (ref, lock, free):
        t.init(rgb, tir, clip.init_box)
    init = np.asarray(clip.init_box, np.float64)
    boxes = {"fp32": [init], "lockstep": [init], "free": [init]}
    cosines = []
    for i in range(1, clip.frames):
        rgb, tir = clip.load(i)
        lock.state = ref.state.copy()
        boxes["fp32"].append(ref.update(rgb, tir, keep_ratio=keep_ratio)[0])
        boxes["lockstep"].append(lock.update(rgb, tir, keep_ratio=keep_ratio)[0])
        cosines.append(cosine(fp32.score, int8.score))
        boxes["free"].append(free.update(rgb, tir, keep_ratio=keep_ratio)[0])
    return {k: np.array(v) for k, v in boxes.items()} | {"cosines": cosines}


def fidelity(
    fp32_dir: str | Path,
    int8_dir: str | Path,
    clips: Sequence[Clip],
    limits: Thresholds | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> list[RungFidelity]:
    """Run FP32 and INT8 trackers over `clips` at every INT8 rung; one `RungFidelity` per rung."""
    from tqdm import tqdm

    from edge.backends.onnxruntime import OrtBackend

    limits = limits or Thresholds()
    fp32 = _score_tap(OrtBackend(fp32_dir, threads, precision="fp32"))
    int8 = _score_tap(OrtBackend(int8_dir, threads, precision="int8"))
    if fp32.backend.manifest.inputs != int8.backend.manifest.inputs:
        raise CKDError(f"{int8_dir}: INT8 graphs take other inputs than the FP32 graphs in {fp32_dir}")
    results = []
    total = len(int8.keep_ratios) * len(clips)
    bar = tqdm(total=total, desc="fidelity", unit="clip", disable=not progress)
    for k in int8.keep_ratios:
        runs = []
        for clip in clips:
            runs.append(_run_clip(fp32, int8, clip, k))
            bar.update(1)
        boxes = {key: [r[key] for r in runs] for key in ("fp32", "lockstep", "free")}
        cos = [c for r in runs for c in r["cosines"]]
        gts = [c.gt for c in clips]
        results.append(rung_fidelity(k, boxes["fp32"], boxes["lockstep"], boxes["free"], gts, cos, limits))
    bar.close()
    return results


def optimized_ops(path: str | Path) -> dict[str, int]:
    """Operator histogram of a graph after ONNX Runtime's CPU graph optimisation (level ALL): shows whether
    Q/DQ GEMMs became int8 kernels (QGemm, QLinearMatMul, QLinearConv, ...)."""
    import tempfile
    from collections import Counter

    import onnx
    import onnxruntime as ort

    from edge.backends.onnxruntime import session_options

    with tempfile.TemporaryDirectory() as tmp:
        so = session_options(1)
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3  # the "hardware specific optimizations" notice is expected here
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath)
    return dict(Counter(n.op_type for n in graph.graph.node))
