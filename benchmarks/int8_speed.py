"""Per-frame tracker latency on this CPU of every INT8 precision tier (quantize/policy.py) and ONNX Runtime's other
INT8 CPU routes (dynamic quantization, 4-bit MatMulNBits) at keep 0.7, against torch FP32 eager at keep 1.0 and the
INT8 floor (model GOPs at 0.7 / this machine's measured INT8 GEMM rate), all in one interleaved run; with the
fidelity gate's verdict for each (FP32 vs INT8 trackers on held-out synthetic clips).

    .venv/bin/python benchmarks/int8_speed.py                   # base model (random weights), 2 threads
    .venv/bin/python benchmarks/int8_speed.py --checkpoint ckd/assets/demo_student.safetensors --calib 128

Exported / calibrated / quantized graphs are cached in --work and reused on the next run (same preset+seed).
Latency does not depend on the weights' values, so the base model is randomly initialised unless --checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

RUNGS = (1.0, 0.7)


def _prepare(args) -> tuple[object, Path, dict[str, Path]]:
    """Export, calibrate and quantize (cached in --work); returns the model, the FP32 folder and one INT8 folder per
    configuration name (tiers, then routes)."""
    import torch

    from calibration.sampler import sample_crops
    from calibration.sources import synthetic_clips
    from calibration.store import load_calibration, write_calibration
    from ckd.errors import CKDError
    from ckd.model.checkpoint import file_sha256, load_model
    from ckd.model.config import preset
    from ckd.model.network import CKDNet
    from edge.backends.onnxruntime import OrtBackend
    from edge.bench.cpu_routes import ROUTES, write_route
    from edge.export import EXPORT_REVISION, export_rungs
    from edge.int8 import quantize_export
    from edge.manifest import Manifest
    from quantize.cpu_target import FORMAT_FOR_TARGET, resolve_target
    from quantize.policy import TIER_NAMES

    if args.checkpoint:
        model, source = load_model(args.checkpoint), file_sha256(args.checkpoint)
    else:
        torch.manual_seed(args.seed)
        model, source = CKDNet(preset(args.preset)).eval(), f"random:{args.preset}:{args.seed}"
    work = Path(args.work).expanduser() / f"{source.replace(':', '_')[:40]}-r{EXPORT_REVISION}"
    fp32, calib = work / "fp32", work / f"calib{args.calib}"
    try:
        Manifest.load(fp32)
    except CKDError:
        t = time.perf_counter()
        _, errors = export_rungs(model, fp32, RUNGS, source, progress=True)
        err = {k: max(v.values()) for k, v in errors.items()}
        print(f"exported {len(RUNGS)} rungs in {time.perf_counter() - t:.0f} s; max abs error vs torch {err}")
    try:
        load_calibration(calib)
    except CKDError:  # tracker-sampled crops of synthetic clips, as `ckd calibrate` makes them (seed 7)
        backend = OrtBackend(fp32, threads=args.threads)
        clips = synthetic_clips(max(2, args.calib // 32), 2 + min(args.calib, 32), seed=7)
        crops = sample_crops(backend, clips, args.calib, every=1, progress=True)
        write_calibration(calib, crops, "synthetic", 7, {"name": model.cfg.name, "checkpoint_sha256": source})
    target = resolve_target(args.cpu_target)
    dirs = {}
    for name in TIER_NAMES:
        d = dirs[name] = work / f"int8-{name}-{FORMAT_FOR_TARGET[target]}-c{args.calib}"
        try:
            Manifest.load(d)
        except CKDError:
            t = time.perf_counter()
            quantize_export(fp32, calib, d, method="minmax", cpu_target=target, tier=name, progress=True)
            print(f"quantized tier {name} in {time.perf_counter() - t:.0f} s")
    for route in ROUTES:
        d = dirs[route] = work / f"{route}-{FORMAT_FOR_TARGET[target]}"
        try:
            Manifest.load(d)
        except CKDError:
            write_route(route, fp32, d, target)
    return model, fp32, dirs


def _latency(configs: dict[str, tuple[object, float]], frames, box, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Per-frame tracker latency of every configuration, interleaved frame by frame (on a shared machine other
    jobs then slow all configurations alike). Median and 10th percentile of update wall time and model time."""
    from ckd.track.tracker import Tracker

    trackers = {name: Tracker(backend) for name, (backend, _) in configs.items()}
    for t in trackers.values():
        t.init(frames[0][0], frames[0][1], box)
    total: dict[str, list[float]] = {name: [] for name in configs}
    model: dict[str, list[float]] = {name: [] for name in configs}
    for i, (rgb, tir) in enumerate(frames[1:]):
        for name, t in trackers.items():
            t0 = time.perf_counter()
            t.update(rgb, tir, keep_ratio=configs[name][1])
            if i >= warmup:
                total[name].append((time.perf_counter() - t0) * 1e3)
                model[name].append(t.last_timing["model_ms"])
    return {
        name: {
            "frame_ms": float(np.median(total[name])),
            "frame_p10_ms": float(np.percentile(total[name], 10)),
            "model_ms": float(np.median(model[name])),
            "model_p10_ms": float(np.percentile(model[name], 10)),
        }
        for name in configs
    }


def op_profile(path: Path, threads: int, runs: int = 4) -> list[tuple[str, float]]:
    """ONNX Runtime's own per-operator kernel time (ms per run), largest first."""
    import collections
    import tempfile

    import onnxruntime as ort

    from edge.backends.onnxruntime import session_options

    so = session_options(threads)
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
        for _ in range(runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / runs
    return per_op.most_common()


def _gate(fp32_dir: Path, int8_dir: Path, clips, threads: int) -> str:
    """The fidelity gate's verdict over `clips` at every rung: "pass" or the failures of the worst rung."""
    from edge.int8 import fidelity
    from quantize.fidelity import Thresholds, worst_rung

    worst = worst_rung(fidelity(fp32_dir, int8_dir, clips, Thresholds(), threads=threads))
    return "pass" if worst is None else f"FAIL k={worst.keep_ratio:.2f}: {'; '.join(worst.failures)}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="base", help="model preset (default base)")
    p.add_argument("--checkpoint", default=None, help="time a real checkpoint instead of a random preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="threads for torch and ONNX Runtime (default 2)")
    p.add_argument("--frames", type=int, default=15, help="timed frames per configuration (default 15)")
    p.add_argument("--calib", type=int, default=8, help="calibration samples (default 8; ~0.3 GB each for base)")
    p.add_argument("--gate-clips", type=int, default=4, help="held-out clips for the fidelity gate (0 = no gate)")
    p.add_argument("--gate-frames", type=int, default=40, help="frames per gate clip (default 40)")
    p.add_argument(
        "--cpu-target",
        default="auto",
        choices=["auto", "vnni", "avx2", "arm"],
        help="quantize for this CPU (default: this machine); e.g. avx2 on a VNNI machine gives the 7-bit-weight "
        "graphs an AVX2 machine runs, with the same results (both exact) but this machine's speed",
    )
    p.add_argument("--work", default="~/.cache/ckd/int8_speed", help="cache folder for graphs")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    import torch

    from calibration.sources import synthetic_clips
    from ckd.track.torch_backend import TorchBackend
    from edge.backends.onnxruntime import OrtBackend
    from edge.bench.env import cpu_info
    from edge.bench.gemm_floor import policy_floor
    from edge.bench.roofline import count_macs, int8_format_gops, ort_gops
    from edge.int8 import optimized_ops
    from edge.manifest import rung_filename
    from quantize.cpu_target import FORMAT_FOR_TARGET, host_target, resolve_target

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model, fp32_dir, int8_dirs = _prepare(args)
    clip = synthetic_clips(1, args.frames + 4, seed=11)[0]
    frames = [clip.load(i) for i in range(clip.frames)]
    configs = {"torch fp32 @1.00": (TorchBackend(model, threads=args.threads), 1.0)}
    configs["ort fp32 @0.70"] = (OrtBackend(fp32_dir, threads=args.threads), 0.7)
    for name, d in int8_dirs.items():  # one backend per configuration: trackers must not share input buffers
        configs[f"ort int8 {name} @0.70"] = (OrtBackend(d, threads=args.threads), 0.7)
    rows = _latency(configs, frames, clip.init_box)
    print("model ms @0.70: " + ", ".join(f"{k} {r['model_ms']:.1f}" for k, r in rows.items()), flush=True)
    base = rows["torch fp32 @1.00"]["frame_ms"]
    gops = 2 * count_macs(model.cfg, 0.7).gemm_macs / 1e9
    rate = max(ort_gops(True, seconds=1.0, threads=args.threads) for _ in range(2))
    floor_ms = gops / rate * 1e3
    by_format = int8_format_gops(seconds=2.0, threads=args.threads)
    gate_clips = synthetic_clips(args.gate_clips, args.gate_frames, seed=1000) if args.gate_clips else []
    for name, d in int8_dirs.items():  # slow on big models: each verdict is printed as it comes
        gate = _gate(fp32_dir, d, gate_clips, args.threads) if gate_clips else None
        rows[f"ort int8 {name} @0.70"]["gate"] = gate
        print(f"gate {name}: {gate}", flush=True)
    cpu = cpu_info()
    target = resolve_target(args.cpu_target)
    print(f"\n{model.cfg.name} model, {args.threads} threads, {args.frames} frames interleaved (tracker update)")
    print(f"CPU: {cpu['model']}, flags {' '.join(cpu['flags'])}; --cpu-target auto = {host_target()}")
    print(f"INT8 format: {FORMAT_FOR_TARGET[target]} (--cpu-target {target}); load average before {load_before[0]:.1f}")
    print(f"INT8 floor @0.70: {gops:.1f} GOP / {rate:.1f} GOP/s (measured ORT MatMulInteger) = {floor_ms:.1f} ms")
    print(
        "INT8 GEMM rate by weight format (interleaved), 512x768x3072: "
        + ", ".join(f"{k} {v:.0f} GOP/s" for k, v in by_format.items())
    )
    gate_note = f"{args.gate_clips} x {args.gate_frames} frames" if gate_clips else "not run"
    print(
        f"{'configuration':<26} {'median ms':>9} {'model ms':>9} {'x torch@1.0':>11} {'x floor':>8}  gate ({gate_note})"
    )
    for name, r in rows.items():
        up = base / r["frame_ms"]
        to_floor = r["model_ms"] / floor_ms
        gate = r.get("gate") or "-"
        print(f"{name:<26} {r['frame_ms']:9.1f} {r['model_ms']:9.1f} {up:10.2f}x {to_floor:7.2f}x  {gate}")
    pf = min((policy_floor(model.cfg, 0.7, threads=args.threads) for _ in range(2)), key=lambda f: f["total_ms"])
    print(
        f"matrix products alone @0.70 (conservative tier), each shape at its measured best rate (QGemm INT8, FP32"
        f" attention core): {pf['total_ms']:.1f} ms = int8 {pf['int8_ms']:.1f} + fp32 {pf['fp32_ms']:.1f}"
        f" = {pf['total_ms'] / floor_ms:.2f}x floor"
    )
    fastest = min(int8_dirs, key=lambda n: rows[f"ort int8 {n} @0.70"]["model_ms"])
    path = int8_dirs[fastest] / rung_filename(0.7, "int8")
    ops = optimized_ops(path)
    int8_ops = {
        k: v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "MatMulInteger", "Dynamic", "MatMulN"))
    }
    print(f"fastest: {fastest}; its int8 kernels after ORT optimisation: {int8_ops}")
    prof = op_profile(path, args.threads)
    total = sum(ms for _, ms in prof)
    print(f"{fastest} @0.70 kernel time by op ({total:.0f} ms): " + ", ".join(f"{k} {ms:.0f}" for k, ms in prof[:10]))
    print(f"load average after {os.getloadavg()[0]:.1f}")
    if args.json:
        doc = {"rows": rows, "int8_gops": rate, "model_gop_k070": gops, "floor_ms": floor_ms, "policy_floor": pf}
        doc["int8_gops_by_format"] = by_format
        doc |= {"cpu": cpu, "cpu_target": target, "int8_format": FORMAT_FOR_TARGET[target], "gate_clips": gate_note}
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    from ckd.errors import CKDError

    try:
        raise SystemExit(main())
    except CKDError as exc:
        print(f"int8_speed: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
