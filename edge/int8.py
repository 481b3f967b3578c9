"""INT8 for an export folder: quantize every rung with a calibration set, and the FP32-vs-INT8 fidelity gate.

`quantize_export` writes `ckd_k<r>_int8.onnx` per rung + a manifest (precision int8, calibration provenance, the
CPU target, INT8 format and precision tier) into a new folder; each graph is audited against its tier's policy
before it is kept. `fidelity` feeds the FP32 and INT8 graphs (ONNX Runtime) identical crops over evaluation clips
and scores their agreement per rung (`quantize.fidelity`); `record_gate` writes the verdict into the manifest and
removes the rungs that failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

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
from quantize.fidelity import CropAgreement, RungFidelity, Thresholds, compare_outputs, rung_fidelity
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
    gate: bool = False,
) -> Manifest:
    """Quantize the FP32 rungs of `onnx_dir` (all, or `keep_ratios`) into `out_dir`; manifest written last.

    `fmt` "ort": the ONNX Runtime CPU graphs (`quantize.ptq`) in the INT8 format exact on `cpu_target` ("auto" =
    this machine, or vnni / avx2 / arm; `quantize.cpu_target`) with the precision tier `tier`
    (`quantize.policy.TIERS`). "trt": TensorRT's symmetric INT8 Q/DQ (`quantize.trt_qdq`) for the TensorRT
    generations of the export, checked by `edge.trt.lint`, with the `trt8.5/` sub-export when the export has one
    and a calibration cache for the TensorRT 8.x route. TensorRT and Model Optimizer graphs are S8S8 (full-range
    weights) and conservative.
    With `gate`, the manifests carry a pending gate record that every consumer refuses until `record_gate`
    writes the verdict: an interrupted gate leaves nothing a later command accepts.
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
    drop_stale_subexports(out_dir)  # ...nor an old trt*/ sub-export that `graphs_for` would take instead
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
        gate={"pending": True} if gate else None,
        directory=None,
    )
    if fmt == "ort":
        manifest.target = graph_target(())
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


def record_gate(
    manifest: Manifest, results: Sequence[RungFidelity], limits: Thresholds, report: str | Path | None = None
) -> Manifest:
    """Write the gate's verdict into the INT8 folder's manifest and its `trt*/` sub-exports' (each saved
    atomically, then its failed rung files deleted; the main manifest last). Rungs that failed, or were not
    gated, leave `rungs` and are listed under `gate.failed` with the reasons, so no later command (ONNX Runtime
    backend, `ckd build --int8`, `ckd flash --int8`) can run them. When every rung failed the manifests keep no
    rung and loading them says so."""
    verdicts = {round(r.keep_ratio, 6): r for r in results}
    failed: dict[float, list[str]] = {}
    for rung in manifest.rungs:
        r = verdicts.get(round(rung.keep_ratio, 6))
        reasons = ["not evaluated by the gate"] if r is None else list(r.failures)
        if reasons:
            failed[round(rung.keep_ratio, 6)] = reasons
    gate = {
        "passed": [r.keep_ratio for r in manifest.rungs if round(r.keep_ratio, 6) not in failed],
        "failed": [{"keep_ratio": k, "failures": reasons} for k, reasons in failed.items()],
        "thresholds": dataclasses.asdict(limits),
        "report": str(report) if report else None,
    }
    directory = manifest.directory
    subs = [(Manifest.load(m.parent, verify=False), m.parent) for m in sorted(directory.glob(f"trt*/{MANIFEST_NAME}"))]
    for m, folder in [*subs, (manifest, directory)]:
        kept = [r for r in m.rungs if round(r.keep_ratio, 6) not in failed]
        gated = dataclasses.replace(m, rungs=kept, gate=gate, directory=None)
        gated.save(folder)
        for rung in m.rungs:
            if rung not in kept:
                (folder / rung.file).unlink(missing_ok=True)
    return gated


class _OwnInputs:
    """A backend seen through private input buffers (copied in on every run), so several trackers, each with its
    own template, can share one backend's sessions."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.name, self.keep_ratios = backend.name, backend.keep_ratios
        self.template_size, self.search_size = backend.template_size, backend.search_size
        self._inputs = {k: np.zeros_like(v) for k, v in backend.input_buffers().items()}
        self.last: dict[str, np.ndarray] | None = None  # outputs of the latest run (the backend's buffers)

    def input_buffers(self) -> dict[str, np.ndarray]:
        return self._inputs

    def run(self, inputs, keep_ratio: float | None = None) -> dict[str, np.ndarray]:
        self.last = self.backend.run(inputs, keep_ratio)
        return self.last


def _valid_box(box: np.ndarray) -> bool:
    return bool(np.isfinite(box).all() and (box[2:] > 0).all())


class _AccuracyRun:
    """One tracker over one clip for the accuracy statistic. With `reset`, VOT-style: a frame whose box misses the
    truth entirely is a failure, the next `RESET_SKIP` frames are not scored (NaN) and the tracker is re-initialised
    on the truth of the last of them, so one early miss cannot decide the whole sequence."""

    RESET_SKIP = 5

    def __init__(self, backend, keep_ratio: float, reset: bool) -> None:
        from ckd.track.tracker import Tracker

        self.tracker = Tracker(_OwnInputs(backend))
        self.keep_ratio, self.reset = keep_ratio, reset
        self.boxes: list[np.ndarray] = []
        self.skip = 0

    def init(self, rgb: np.ndarray, tir: np.ndarray, box: np.ndarray) -> None:
        self.tracker.init(rgb, tir, box)
        self.boxes.append(np.asarray(box, np.float64))

    def step(self, rgb: np.ndarray, tir: np.ndarray, gt: np.ndarray) -> None:
        from ckd.eval.metrics import overlap

        known = _valid_box(gt)
        if self.skip:
            self.boxes.append(np.full(4, np.nan))
            self.skip -= 1
            if not self.skip:
                if known:
                    self.tracker.init(rgb, tir, gt)
                else:
                    self.skip = 1  # re-initialise on the next frame with a truth box
            return
        box, _ = self.tracker.update(rgb, tir, keep_ratio=self.keep_ratio)
        self.boxes.append(box)
        if self.reset and known and not overlap(box[None], gt[None])[0] > 0:
            self.skip = self.RESET_SKIP


def _compare_clip(
    fp32, candidates: dict[str, object], clip: Clip, ratios: dict[str, tuple[float, ...]], reset: bool
) -> tuple[dict[tuple[str, float], CropAgreement], dict[tuple[str, float], tuple]]:
    """One clip, every candidate and rung, frame by frame (each frame is loaded once).

    Crops: around the previous frame's truth box where the clip has one, else where the FP32 tracker put its
    search window; each candidate runs on exactly the FP32 model's inputs. Accuracy (ground truth only): an FP32
    tracker (key None) and one per candidate, each on its own."""
    from ckd.track.tracker import Tracker

    every = sorted({k for ks in ratios.values() for k in ks}, reverse=True)
    has_gt = clip.gt is not None
    crop = {k: Tracker(_OwnInputs(fp32)) for k in every}
    acc = {}
    if has_gt:
        acc = {(None, k): _AccuracyRun(fp32, k, reset) for k in every}
        acc |= {(n, k): _AccuracyRun(c, k, reset) for n, c in candidates.items() for k in ratios[n]}
    parts: dict[tuple[str, float], list[CropAgreement]] = {(n, k): [] for n in candidates for k in ratios[n]}
    rgb, tir = clip.load(0)
    for t in crop.values():
        t.init(rgb, tir, clip.init_box)
    for run in acc.values():
        run.init(rgb, tir, clip.init_box)
    for i in range(1, clip.frames):
        rgb, tir = clip.load(i)
        for k, t in crop.items():
            if has_gt and _valid_box(clip.gt[i - 1]):
                t.state = np.asarray(clip.gt[i - 1], np.float64).copy()
            t.backend.last = None
            t.update(rgb, tir, keep_ratio=k)
            if t.backend.last is None:
                continue  # a frame the tracker could not use (non-finite pixels): nothing was run
            ref = {name: v.copy() for name, v in t.backend.last.items()}
            for n, c in candidates.items():
                if k in ratios[n]:
                    parts[(n, k)].append(compare_outputs(ref, c.run(t.inputs, k), fp32.search_size))
        for run in acc.values():
            run.step(rgb, tir, clip.gt[i])
    agreement = {key: CropAgreement.concat(p) for key, p in parts.items()}
    boxes = {key: np.array(run.boxes) for key, run in acc.items()}
    accuracy = {(n, k): (boxes[(None, k)], boxes[(n, k)], clip.gt) for (n, k) in parts if has_gt}
    return agreement, accuracy


def fidelity_many(
    fp32_dir: str | Path,
    candidates: Mapping[str, str | Path | Manifest],
    clips: Sequence[Clip],
    limits: Thresholds | None = None,
    threads: int | None = None,
    progress: bool = False,
    reset_on_failure: bool = True,
) -> dict[str, list[RungFidelity]]:
    """Gate several candidate folders (or manifests, e.g. pending ones) against one FP32 export in a single pass over
    `clips`: per candidate, one `RungFidelity` per rung, highest keep ratio first. Candidates may be of any
    precision (an FP32 copy is compared like an INT8 one)."""
    from tqdm import tqdm

    from edge.backends.onnxruntime import OrtBackend

    fp32 = OrtBackend(fp32_dir, threads, precision="fp32")
    backends = {n: OrtBackend(src, threads) for n, src in candidates.items()}
    ratios = {}
    for n, b in backends.items():
        if b.manifest.inputs != fp32.manifest.inputs:
            raise CKDError(f"{b.manifest.directory}: its graphs take other inputs than the FP32 graphs in {fp32_dir}")
        missing = [k for k in b.keep_ratios if k not in fp32.keep_ratios]
        if missing:
            raise CKDError(
                f"{fp32_dir}: no fp32 rung with keep ratio {missing[0]:.2f} to compare {b.manifest.directory} with"
            )
        ratios[n] = tuple(sorted(b.keep_ratios, reverse=True))
    if not clips:
        raise CKDError("the fidelity gate needs at least one evaluation clip")
    agreement: dict[tuple[str, float], list[CropAgreement]] = {}
    accuracy: dict[tuple[str, float], list[tuple]] = {}
    bar = tqdm(total=sum(c.frames - 1 for c in clips), desc="fidelity", unit="frame", disable=not progress)
    for clip in clips:
        crops, acc = _compare_clip(fp32, backends, clip, ratios, reset_on_failure)
        for key, a in crops.items():
            agreement.setdefault(key, []).append(a)
        for key, a in acc.items():
            accuracy.setdefault(key, []).append(a)
        bar.update(clip.frames - 1)
    bar.close()
    return {
        n: [
            rung_fidelity(
                k, CropAgreement.concat(agreement[(n, k)]), accuracy.get((n, k), ()), limits, reset_on_failure
            )
            for k in ks
        ]
        for n, ks in ratios.items()
    }


def fidelity(
    fp32_dir: str | Path,
    int8_dir: str | Path | Manifest,
    clips: Sequence[Clip],
    limits: Thresholds | None = None,
    threads: int | None = None,
    progress: bool = False,
    reset_on_failure: bool = True,
) -> list[RungFidelity]:
    """The fidelity gate: one `RungFidelity` per rung of `int8_dir` (a folder, or the manifest `quantize_export`
    returned: a pending one is refused when loaded from disk) against the
    FP32 export, `.failures` empty = pass. See `quantize.fidelity` for what is compared."""
    return fidelity_many(fp32_dir, {"int8": int8_dir}, clips, limits, threads, progress, reset_on_failure)["int8"]


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
