"""`ckd build`: one TensorRT engine per keep-ratio rung and precision, cached per device, `best` chosen by measurement.

The TensorRT calls are kept thin and go through `edge.trt.flags` for every API difference between 8.5/8.6
and 10.x. Everything decided without a GPU (plans, keys, choice) lives in `plan.py` and `cache.py`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import numpy as np

from ckd.atomic import write_bytes_atomic, write_text_atomic
from ckd.errors import CKDError
from edge.devices import Device
from edge.manifest import Manifest
from edge.trt import cache
from edge.trt.flags import TrtFeatures, network_flags
from edge.trt.plan import Candidate, RungPlan, choose_best, fidelity, plan_rungs
from edge.trt.reference import REFERENCE_NAME, load_reference


def _calibrator(trt: ModuleType, cache_bytes: bytes):
    """An entropy calibrator that only replays a calibration cache (TensorRT 8.x INT8 without Q/DQ)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):  # noqa: ARG002 - the cache answers everything
            return None

        def read_calibration_cache(self) -> bytes:
            return cache_bytes

        def write_calibration_cache(self, cache) -> None:  # noqa: ARG002
            return None

    return CacheCalibrator()


def build_engine(
    trt: ModuleType, features: TrtFeatures, plan: RungPlan, workspace_mb: int, timing_cache: Path | None
) -> bytes:
    """Parse the plan's ONNX and build a serialized engine; the timing cache is read and written back."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = plan.precision == "int8" and plan.int8_source == "qdq" and features.strongly_typed
    network = builder.create_network(network_flags(trt, features, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(plan.onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CKDError(f"{plan.onnx}: TensorRT cannot parse it: {errors[:300]}")
    config = builder.create_builder_config()
    if features.memory_pool_limit:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:
        config.max_workspace_size = workspace_mb << 20
    if not strongly_typed:  # strongly typed networks take their types from the graph; flags are not allowed
        if plan.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if plan.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            if plan.int8_source == "calibration-cache":
                config.int8_calibrator = _calibrator(trt, plan.calibration_cache.read_bytes())
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if timing_cache is not None and features.timing_cache:
        data = timing_cache.read_bytes() if timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CKDError(f"{plan.onnx}: TensorRT failed to build a {plan.precision} engine (see the log above)")
    if timing_cache is not None and features.timing_cache:
        write_bytes_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def measure(
    blob: bytes, export: Manifest, device: Device, keep_ratio: float, inputs: dict[str, np.ndarray], runs: int = 50
) -> tuple[float, dict]:
    """Median GPU latency (ms) of one engine on the given inputs, and its outputs."""
    from edge.backends.tensorrt import TensorRTBackend

    cfg = export.ckd_config
    backend = TensorRTBackend(
        {keep_ratio: blob}, cfg.template_size, cfg.search_size, cfg.patch_size, zero_copy=device.is_jetson
    )
    try:
        bufs = backend.input_buffers()
        for name, buf in bufs.items():
            np.copyto(buf, inputs[name])
        outputs = backend.run(bufs)
        for _ in range(10):
            backend.run(bufs)
        times = []
        for _ in range(runs):
            backend.run(bufs)
            times.append(backend.last_gpu_ms)
        return float(np.median(times)), outputs
    finally:
        backend.close()


def build_all(
    export_dir: str | Path,
    precision: str,
    device: Device,
    trt: ModuleType,
    features: TrtFeatures,
    *,
    int8_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workspace_mb: int = 1024,
    dla_core: int | None = None,
    log=print,
) -> Path:
    """Build (or reuse) every planned engine, gate them on the reference outputs, write `selection.json`."""
    from tqdm import tqdm

    from edge.backends.tensorrt import SELECTION_NAME

    export = Manifest.load(export_dir)
    cache_dir = Path(cache_dir) if cache_dir else Path(export_dir) / "engines"
    plans = plan_rungs(
        export,
        precision,
        device.profile,
        int8_export=Manifest.load(int8_dir) if int8_dir else None,
        allow_calibration_cache=features.major < 10 and features.int8_calibrator,
        dla_core=dla_core,
    )
    if precision == "best" and not any(p.precision == "int8" for p in plans):
        log("no INT8 source (run `ckd quantize` for Q/DQ rungs): best = FP16 engines only")
    timing = cache.timing_cache_path(cache_dir, features.version, device.name)
    has_reference = (export.directory / REFERENCE_NAME).is_file()
    keys, candidates = {}, []
    for plan in tqdm(plans, desc="engines", unit="engine"):
        key = cache.EngineKey(
            plan.onnx_sha256,
            plan.keep_ratio,
            plan.precision,
            features.version,
            device.name,
            device.profile.compute_capability,
            plan.dla_core,
        )
        found = cache.check(cache_dir, key)
        if found.ok:
            blob = found.path.read_bytes()
        else:
            log(found.reason)
            t0 = time.perf_counter()
            blob = build_engine(trt, features, plan, workspace_mb, timing)
            cache.store(cache_dir, key, blob, {"build_seconds": round(time.perf_counter() - t0, 1)})
        keys[(plan.keep_ratio, plan.precision)] = key
        if has_reference:
            inputs, ref = load_reference(export.directory, plan.keep_ratio)
            gpu_ms, outputs = measure(blob, export, device, plan.keep_ratio, inputs)
            candidates.append(Candidate(plan.keep_ratio, plan.precision, gpu_ms, fidelity(outputs, ref)))
    if has_reference:
        chosen = {c.keep_ratio: (c.precision, c) for c in choose_best(candidates).values()}
    else:
        log(f"{export.directory / REFERENCE_NAME}: missing, so no fidelity gate and no measured choice")
        fallback = "int8" if precision == "int8" else "fp16" if precision in ("best", "fp16") else precision
        chosen = {p.keep_ratio: (fallback, None) for p in plans if p.precision == fallback}
    rungs = []
    for ratio, (prec, cand) in sorted(chosen.items()):
        item = {"key": asdict(keys[(ratio, prec)])}
        if cand is not None:
            item |= {"gpu_ms": round(cand.gpu_ms, 3), "fidelity": asdict(cand.fidelity)}
            others = [c for c in candidates if c.keep_ratio == ratio and c.precision != prec]
            item["alternatives"] = [{"precision": c.precision, "gpu_ms": round(c.gpu_ms, 3)} for c in others]
        rungs.append(item)
        log(f"keep ratio {ratio:.2f}: {prec}" + (f" {cand.gpu_ms:.2f} ms GPU" if cand else ""))
    selection = {"device": device.name, "tensorrt": features.version, "precision_request": precision, "rungs": rungs}
    path = cache_dir / SELECTION_NAME
    write_text_atomic(path, json.dumps(selection, indent=2) + "\n")
    return path
