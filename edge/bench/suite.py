"""One benchmark run: models x backends x precisions x rungs on the same clip, plus the peer, plus the roofline.

Every configuration runs the same protocol (`measure.track_clip`) on the same in-memory frames, one after the
other in one process, so the ratios between rows are comparisons made under the same conditions.
"""

from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ckd.errors import CKDError
from ckd.model.config import CKDConfig
from edge.bench.clip import Clip, accuracy
from edge.bench.measure import Run, track_clip
from edge.bench.roofline import count_macs, ort_gops
from edge.trt.tegra import TegraStats

CALIB_SEED = 9001  # synthetic calibration clips, never the benchmark clip's seed
BACKEND_PRECISIONS = {"torch": ("fp32",), "onnxruntime": ("fp32", "int8"), "tensorrt": ("fp32", "fp16", "int8")}


@dataclass
class Model:
    """A network to benchmark: a label for the table, the module, and the sha256 of its weights."""

    label: str
    net: object  # CKDNet
    sha256: str
    source: str

    @property
    def cfg(self) -> CKDConfig:
        return self.net.cfg


@dataclass
class Spec:
    """What to run."""

    models: list[Model]
    backends: list[str] = field(default_factory=lambda: ["torch", "onnxruntime"])
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8"])
    keep_ratios: list[float] = field(default_factory=lambda: [1.0, 0.7])
    warmup: int = 3
    threads: int | None = None
    cache_dir: Path = Path(".ckd_cache/bench")
    peers_dir: Path | None = None
    calib_samples: int = 16  # INT8 calibration crops (latency barely depends on them; accuracy does)
    probe_seconds: float = 0.0  # GEMM ceiling probe right before and after each row (0: none)


def weights_sha256(net) -> str:
    """sha256 over the state dict's names and raw bytes (identifies random-weight models too)."""
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _export_dir(spec: Spec, model: Model, precision: str, progress: bool) -> Path:
    """An export folder for the model's rungs at `precision`, reused from the cache when its manifest matches."""
    from edge.export import EXPORT_REVISION
    from edge.manifest import Manifest

    folder = spec.cache_dir / f"{model.label}-{model.sha256[:12]}-r{EXPORT_REVISION}" / precision
    want = {round(r, 4) for r in spec.keep_ratios}
    try:
        m = Manifest.load(folder)
        have = {round(r.keep_ratio, 4) for r in m.rungs if r.precision == precision}
        if m.checkpoint_sha256 == model.sha256 and want <= have:
            return folder
    except CKDError:
        pass
    if precision == "fp32":
        from edge.export import export_rungs

        export_rungs(model.net, folder, spec.keep_ratios, model.sha256, verify=False, progress=progress)
        return folder
    if precision == "int8":
        return _quantize_dir(spec, model, folder, progress)
    raise CKDError(f"onnxruntime has no {precision} path")


def _quantize_dir(spec: Spec, model: Model, folder: Path, progress: bool) -> Path:
    """INT8 Q/DQ rungs (`edge.int8.quantize_export`, as `ckd quantize`) calibrated on synthetic clips.

    The calibration crops come from tracking with the FP32 export (as `ckd calibrate --model DIR`), on clips
    seeded apart from the benchmark clip, so the bench never calibrates on the frames it measures.
    """
    try:
        from calibration.sampler import sample_crops
        from calibration.sources import synthetic_clips
        from calibration.store import write_calibration
        from edge.int8 import quantize_export
    except ImportError:
        raise _Skip("INT8 quantization (calibration, edge.int8) is not available in this checkout") from None
    from edge.backends.onnxruntime import OrtBackend

    fp32 = _export_dir(spec, model, "fp32", progress)
    calib = folder.parent / "calibration"
    tracker_backend = OrtBackend(fp32, threads=spec.threads, precision="fp32")
    clips = synthetic_clips(count=2, frames=max(8, spec.calib_samples), seed=CALIB_SEED)
    crops = sample_crops(tracker_backend, clips, spec.calib_samples, progress=progress)
    identity = {"name": model.cfg.name, "checkpoint_sha256": model.sha256}
    write_calibration(calib, crops, "synthetic", CALIB_SEED, identity)
    quantize_export(fp32, calib, folder, spec.keep_ratios, progress=progress)
    return folder


class _Skip(Exception):
    """A configuration that cannot run here; the reason goes into the report's notes."""


def make_backend(spec: Spec, model: Model, backend: str, precision: str, progress: bool = False):
    """The tracker backend for one (model, backend, precision), exporting into the cache when needed."""
    if precision not in BACKEND_PRECISIONS.get(backend, ()):
        raise _Skip(f"{backend} has no {precision} path on this machine")
    if backend == "torch":
        from ckd.track.torch_backend import TorchBackend

        return TorchBackend(model.net, threads=spec.threads)
    if backend == "onnxruntime":
        from edge.backends.onnxruntime import OrtBackend

        return OrtBackend(_export_dir(spec, model, precision, progress), threads=spec.threads, precision=precision)
    if backend == "tensorrt":
        return _tensorrt_backend(spec, model, precision, progress)
    raise CKDError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_PRECISIONS)}")


def _tensorrt_backend(spec: Spec, model: Model, precision: str, progress: bool):
    """Engines built by `edge.trt.build.build_all` (as `ckd build`) from the cached export, one cache per precision.

    Only where TensorRT imports (GPU machines); not exercised on the CPU CI.
    """
    from edge.trt.flags import detect, import_tensorrt

    try:
        trt = import_tensorrt()
    except CKDError:
        raise _Skip("TensorRT is not installed on this machine") from None
    from edge import devices
    from edge.backends.tensorrt import TensorRTBackend
    from edge.trt.build import build_all

    device = devices.detect()
    fp32 = _export_dir(spec, model, "fp32", progress)
    int8 = _export_dir(spec, model, "int8", progress) if precision == "int8" else None
    engines = fp32.parent / f"engines-{precision}"
    build_all(fp32, precision, device, trt, detect(trt), int8_dir=int8, cache_dir=engines, log=lambda _: None)
    return TensorRTBackend.from_export(fp32, device, engines)


def _row(model: Model | None, backend: str, precision: str, keep: float | None, run: Run, clip: Clip) -> dict:
    stats = run.stats()
    total = stats["total"]
    row = {
        "model": model.label if model else "nanotrack_v2",
        "backend": backend,
        "precision": precision,
        "keep_ratio": keep,
        "p50_ms": total["p50"],
        "p95_ms": total["p95"],
        "p99_ms": total["p99"],
        "mean_ms": total["mean"],
        "fps": 1e3 / total["mean"],
        "frames": len(run.times["total"]),
        "peak_rss_mb": run.peak_rss_mb,
        "peak_rss_scope": run.peak_rss_scope,
    }
    for stage in ("preprocess", "model", "decode"):
        if stage in stats:
            row |= {f"{stage}_{q}_ms": stats[stage][q] for q in ("p50", "p95", "p99")}
    row |= accuracy(run.boxes, clip.gt)
    if model is not None:
        macs = count_macs(model.cfg, keep)
        row["gmacs_thop"] = macs.thop_macs / 1e9
        row["gemm_gops"] = 2 * macs.gemm_macs / 1e9
        row["kept_tokens"] = model.cfg.kept_tokens(keep)
    return row


def _probe(spec: Spec, precision: str) -> float:
    """This precision's GEMM rate (ONNX Runtime MatMul / MatMulInteger) now: 0.0 when probing is off or n/a."""
    if spec.probe_seconds <= 0 or precision not in ("fp32", "int8"):
        return 0.0
    return ort_gops(precision == "int8", seconds=spec.probe_seconds, threads=spec.threads)


def _power(stats: TegraStats) -> dict:
    summary = stats.summary()
    return {"power": summary} if summary else {}


def run_suite(spec: Spec, clip: Clip, progress: bool = True) -> tuple[list[dict], list[str]]:
    """Measure every configuration; returns (rows, notes about what was skipped and why)."""
    from tqdm import tqdm

    rows: list[dict] = []
    notes: list[str] = []
    combos = [(m, b, p) for m in spec.models for b in spec.backends for p in spec.precisions]
    total = len(combos) * len(spec.keep_ratios) + (spec.peers_dir is not None)
    bar = tqdm(total=total, desc="bench", unit="cfg", disable=not progress)
    for model, backend, precision in combos:
        try:
            be = make_backend(spec, model, backend, precision, progress)
        except _Skip as exc:
            note = f"{model.label} {backend} {precision}: skipped ({exc})"
            if backend != "torch" or precision == "fp32":
                notes.append(note)
            bar.update(len(spec.keep_ratios))
            continue
        for keep in sorted(spec.keep_ratios, reverse=True):
            bar.set_postfix_str(f"{model.label} {backend} {precision} k{keep:.2f}")
            before = _probe(spec, precision)
            with TegraStats() as power:  # does nothing off a Jetson
                run = track_clip(be, clip, keep, warmup=spec.warmup)
            ceiling = max(before, _probe(spec, precision))
            row = _row(model, backend, precision, keep, run, clip) | _power(power)
            rows.append(row | ({"ceiling_gops_adjacent": ceiling} if ceiling > 0 else {}))
            bar.update(1)
        close = getattr(be, "close", None)
        if close is not None:
            close()  # TensorRT frees its device buffers
        del be
        gc.collect()
    if spec.peers_dir is not None:
        from edge.bench.peers import nanotrack_files, track_nanotrack

        if nanotrack_files(spec.peers_dir) is None:
            notes.append(f"peer NanoTrack skipped: no NanoTrack v2 ONNX files in {spec.peers_dir}")
        else:
            run = track_nanotrack(spec.peers_dir, clip, warmup=spec.warmup, threads=spec.threads)
            rows.append(_row(None, "opencv", "fp32", None, run, clip))
        bar.update(1)
    bar.close()
    return rows, notes


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
