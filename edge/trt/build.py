"""`ckd build`: one TensorRT engine per keep-ratio rung and precision, cached per device, `best` chosen by measurement.

The TensorRT calls are kept thin and go through `edge.trt.flags` for every API difference between 8.5/8.6
and 10.x. Everything decided without a GPU (plans, keys, flags, pinned layers, the choice, selection.json) is a
plain function here or in `plan.py` / `cache.py`. Under `best` every (rung, precision) is built and measured on
its own: a failure is recorded with its one-line reason in `selection.json` and whatever passed is kept.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from ckd.atomic import write_bytes_atomic, write_text_atomic
from ckd.errors import CKDError
from edge.devices import Device
from edge.manifest import Manifest
from edge.trt import cache
from edge.trt.flags import TrtFeatures, builder_flags, network_flags
from edge.trt.plan import Candidate, RungPlan, choose_best, gate_reason, plan_rungs
from edge.trt.reference import REFERENCE_NAME, load_reference
from edge.trt.selection import SELECTION_NAME, selection_doc
from edge.trt.targets import LN_FP32_MARKER, graphs_for
from quantize.fidelity import check_outputs


def pinned_layers(names: list[str]) -> list[int]:
    """Indices of the network layers a decomposed LayerNorm became (kept FP32 under FP16/INT8 flags)."""
    return [i for i, name in enumerate(names) if LN_FP32_MARKER in name]


def _pin_fp32(trt: ModuleType, network) -> int:
    """Pin the decomposed-LayerNorm layers (float outputs only) to FP32; returns how many."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    count = 0
    for i in pinned_layers([layer.name for layer in layers]):
        layer = layers[i]
        outputs = range(layer.num_outputs)
        if all(layer.get_output(k).dtype in (trt.float32, trt.float16) for k in outputs):
            layer.precision = trt.float32
            for k in outputs:
                layer.set_output_type(k, trt.float32)
            count += 1
    return count


def build_engine(
    trt: ModuleType, features: TrtFeatures, plan: RungPlan, workspace_mb: int, timing_cache: Path | None
) -> bytes:
    """Parse the plan's ONNX and build a serialized engine; the timing cache is read and written back."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, features))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(plan.onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CKDError(f"{plan.onnx}: TensorRT cannot parse it: {errors[:300]}")
    config = builder.create_builder_config()
    if features.memory_pool_limit:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:
        config.max_workspace_size = workspace_mb << 20
    if plan.fp32_layernorm and plan.precision != "fp32" and _pin_fp32(trt, network) == 0:
        raise CKDError(f"{plan.onnx}: no decomposed-LayerNorm layers found to keep in FP32")
    for flag in builder_flags(plan.precision, plan.dla_core is not None, plan.fp32_layernorm):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.int8_source == "calibration-cache":
        from edge.trt.calibrator import cache_calibrator

        config.int8_calibrator = cache_calibrator(trt, plan.calibration_cache.read_bytes(), str(plan.calibration_cache))
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
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
    blob: bytes,
    export: Manifest,
    device: Device,
    keep_ratio: float,
    inputs: dict[str, np.ndarray],
    runs: int = 50,
    dla_core: int | None = None,
) -> tuple[float, dict]:
    """Median GPU latency (ms) of one engine on the given inputs, and its outputs."""
    from edge.backends.tensorrt import TensorRTBackend

    cfg = export.ckd_config
    with TensorRTBackend(
        {keep_ratio: blob},
        cfg.template_size,
        cfg.search_size,
        cfg.patch_size,
        zero_copy=device.is_jetson,
        dla_core=dla_core,
    ) as backend:
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


def engine_key(plan: RungPlan, features: TrtFeatures, device: Device) -> cache.EngineKey:
    """Everything the engine depends on: its graph (FP32 or Q/DQ), calibration cache, TensorRT, device, DLA."""
    return cache.EngineKey(
        plan.onnx_sha256,
        plan.keep_ratio,
        plan.precision,
        features.version,
        device.name,
        device.profile.compute_capability,
        plan.dla_core,
        plan.calibration_sha256,
    )


def one_line(exc: BaseException) -> str:
    """An exception as one line (TensorRT's Python errors can span many)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


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
    """Build (or reuse) every planned engine, gate them on the reference outputs, write `selection.json`.

    The graphs are those of `export_dir` (and `int8_dir`) made for this TensorRT (`edge.trt.targets`); engines
    go to `export_dir/engines` unless `cache_dir`. A plan that fails to parse, build, run or pass the gate is
    recorded in `selection.json`; CKDError only when no rung has an engine.
    """
    from tqdm import tqdm

    export = Manifest.load(graphs_for(export_dir, features.version))
    int8 = Manifest.load(graphs_for(int8_dir, features.version)) if int8_dir else None
    cache_dir = Path(cache_dir) if cache_dir else Path(export_dir) / "engines"
    plans = plan_rungs(
        export,
        precision,
        device.profile,
        int8_export=int8,
        allow_calibration_cache=features.major < 10 and features.int8_calibrator,
        dla_core=dla_core,
    )
    if precision == "best" and not any(p.precision == "int8" for p in plans):
        log("no INT8 source (run `ckd quantize --format trt` for Q/DQ rungs): best = FP16 engines only")
    timing = cache.timing_cache_path(cache_dir, features.version, device.name)
    has_reference = (export.directory / REFERENCE_NAME).is_file()
    if not has_reference:
        log(f"{export.directory / REFERENCE_NAME}: missing, so no fidelity gate and no measured choice")
    keys, candidates, failures = {}, [], []
    for plan in tqdm(plans, desc="engines", unit="engine"):
        key = engine_key(plan, features, device)
        try:
            found, blob = cache.lookup(cache_dir, key)
            if not found.ok:
                log(found.reason)
                t0 = time.perf_counter()
                blob = build_engine(trt, features, plan, workspace_mb, timing)
                cache.store(cache_dir, key, blob, {"build_seconds": round(time.perf_counter() - t0, 1)})
            if has_reference:
                inputs, ref = load_reference(export.directory, plan.keep_ratio)
                gpu_ms, outputs = measure(blob, export, device, plan.keep_ratio, inputs, dla_core=plan.dla_core)
                check = check_outputs(ref, outputs, export.ckd_config.search_size)  # as `ckd quantize --gate`
                candidate = Candidate(plan.keep_ratio, plan.precision, gpu_ms, check)
                if not candidate.fidelity.passed:
                    raise CKDError(gate_reason(candidate))
                candidates.append(candidate)
        except Exception as exc:  # noqa: BLE001 - TensorRT and CUDA raise their own types; each plan stands alone
            reason = one_line(exc)
            failures.append({"keep_ratio": plan.keep_ratio, "precision": plan.precision, "reason": reason})
            log(f"keep ratio {plan.keep_ratio:.2f} {plan.precision}: FAILED: {reason}")
            continue
        keys[(plan.keep_ratio, plan.precision)] = key
    if has_reference:
        chosen = {c.keep_ratio: (c.precision, c) for c in choose_best(candidates).values()}
    else:
        fallback = "int8" if precision == "int8" else "fp16" if precision in ("best", "fp16") else precision
        chosen = {ratio: (prec, None) for ratio, prec in keys if prec == fallback}
    for ratio, (prec, cand) in sorted(chosen.items()):
        log(f"keep ratio {ratio:.2f}: {prec}" + (f" {cand.gpu_ms:.2f} ms GPU" if cand else ""))
    sources = {"export": str(Path(export_dir).resolve()), "int8": str(Path(int8_dir).resolve()) if int8_dir else None}
    doc = selection_doc(device, features, precision, chosen, keys, candidates, failures, sources)
    path = cache_dir / SELECTION_NAME
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
    if not chosen:
        raise CKDError(f"no engine was built and passed for any rung ({len(failures)} failures in {path})")
    return path
