"""Per-frame tracker latency on this CPU: torch FP32 eager, ONNX Runtime FP32 and ONNX Runtime INT8 (Q/DQ),
at keep ratios 1.0 and 0.7, as ratios to torch FP32 eager at 1.0, plus the INT8 floor
(model GOPs at 0.7 / this machine's measured INT8 GEMM rate).

    .venv/bin/python benchmarks/int8_speed.py                   # base model (random weights), 2 threads
    .venv/bin/python benchmarks/int8_speed.py --preset nano --frames 30

Exported / calibrated / quantized graphs are cached in --work and reused on the next run (same preset+seed).
Latency does not depend on the weights' values, so the base model is randomly initialised unless --checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

RUNGS = (1.0, 0.7)


def _prepare(args) -> tuple[object, Path, Path]:
    import torch

    from calibration.sampler import sample_crops
    from calibration.sources import synthetic_clips
    from calibration.store import load_calibration, write_calibration
    from ckd.errors import CKDError
    from ckd.model.checkpoint import file_sha256, load_model
    from ckd.model.config import preset
    from ckd.model.network import CKDNet
    from edge.backends.onnxruntime import OrtBackend
    from edge.export import EXPORT_REVISION, export_rungs
    from edge.int8 import quantize_export
    from edge.manifest import Manifest

    if args.checkpoint:
        model, source = load_model(args.checkpoint), file_sha256(args.checkpoint)
    else:
        torch.manual_seed(args.seed)
        model, source = CKDNet(preset(args.preset)).eval(), f"random:{args.preset}:{args.seed}"
    work = Path(args.work).expanduser() / f"{source.replace(':', '_')[:40]}-r{EXPORT_REVISION}"
    fp32, calib, int8 = work / "fp32", work / "calib", work / "int8"
    try:
        Manifest.load(fp32)
    except CKDError:
        t = time.perf_counter()
        _, errors = export_rungs(model, fp32, RUNGS, source, progress=True)
        err = {k: max(v.values()) for k, v in errors.items()}
        print(f"exported {len(RUNGS)} rungs in {time.perf_counter() - t:.0f} s; max abs error vs torch {err}")
    try:
        load_calibration(calib)
    except CKDError:
        backend = OrtBackend(fp32, threads=args.threads)
        crops = sample_crops(backend, synthetic_clips(2, args.calib, seed=7), args.calib, every=1, progress=True)
        write_calibration(calib, crops, "synthetic", 7, {"name": model.cfg.name, "checkpoint_sha256": source})
    try:
        Manifest.load(int8)
    except CKDError:
        t = time.perf_counter()
        quantize_export(fp32, calib, int8, method="minmax", progress=True)
        print(f"quantized in {time.perf_counter() - t:.0f} s")
    return model, fp32, int8


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
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
    for _ in range(runs):
        sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / runs
    return per_op.most_common()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="base", help="model preset (default base)")
    p.add_argument("--checkpoint", default=None, help="time a real checkpoint instead of a random preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="threads for torch and ONNX Runtime (default 2)")
    p.add_argument("--frames", type=int, default=15, help="timed frames per configuration (default 15)")
    p.add_argument("--calib", type=int, default=8, help="calibration samples (default 8; ~0.3 GB each for base)")
    p.add_argument("--work", default="~/.cache/ckd/int8_speed", help="cache folder for graphs")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    import torch

    from calibration.sources import synthetic_clips
    from ckd.track.torch_backend import TorchBackend
    from edge.backends.onnxruntime import OrtBackend
    from edge.bench.gemm_floor import policy_floor
    from edge.bench.roofline import count_macs, ort_gops
    from edge.int8 import optimized_ops

    torch.set_num_threads(args.threads)
    model, fp32_dir, int8_dir = _prepare(args)
    clip = synthetic_clips(1, args.frames + 4, seed=11)[0]
    frames = [clip.load(i) for i in range(clip.frames)]
    configs = {"torch fp32 @1.00": (TorchBackend(model, threads=args.threads), 1.0)}
    for name, d in (("ort fp32", fp32_dir), ("ort int8", int8_dir)):
        for k in RUNGS:  # one backend per configuration: trackers must not share input buffers
            configs[f"{name} @{k:.2f}"] = (OrtBackend(d, threads=args.threads), k)
    configs["ort int8 spin @0.70"] = (OrtBackend(int8_dir, threads=args.threads, spin=True), 0.7)
    rows = _latency(configs, frames, clip.init_box)
    base = rows["torch fp32 @1.00"]["frame_ms"]
    best = rows["torch fp32 @1.00"]["frame_p10_ms"]
    print(f"\n{model.cfg.name} model, {args.threads} threads, {args.frames} frames interleaved (tracker update)")
    print(f"{'configuration':<18} {'median ms':>10} {'p10 ms':>8} {'model ms':>9} {'speed-up median / p10':>23}")
    for name, r in rows.items():
        up = f"{base / r['frame_ms']:.2f}x / {best / r['frame_p10_ms']:.2f}x"
        print(f"{name:<18} {r['frame_ms']:10.1f} {r['frame_p10_ms']:8.1f} {r['model_ms']:9.1f} {up:>23}")
    gops = 2 * count_macs(model.cfg, 0.7).gemm_macs / 1e9
    rate = max(ort_gops(True, seconds=1.0, threads=args.threads) for _ in range(2))
    floor_ms = gops / rate * 1e3
    int8_07, int8_07_p10 = rows["ort int8 @0.70"]["model_ms"], rows["ort int8 @0.70"]["model_p10_ms"]
    ops = optimized_ops(int8_dir / "ckd_k0.70_int8.onnx")
    int8_ops = {k: v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "MatMulInteger", "ConvInteger"))}
    print(f"\nINT8 floor @0.70: {gops:.1f} GOP / {rate:.1f} GOP/s (measured ORT MatMulInteger) = {floor_ms:.1f} ms")
    print(f"ORT INT8 @0.70 model time / floor: median {int8_07 / floor_ms:.2f}x, p10 {int8_07_p10 / floor_ms:.2f}x")
    spin_07 = rows["ort int8 spin @0.70"]["model_ms"]
    print(f"ORT INT8 spin @0.70 model time / floor: median {spin_07 / floor_ms:.2f}x")
    pf = min((policy_floor(model.cfg, 0.7, threads=args.threads) for _ in range(2)), key=lambda f: f["total_ms"])
    print(
        f"matrix products alone @0.70, each shape at its measured best rate (QGemm INT8, FP32 attention core):"
        f" {pf['total_ms']:.1f} ms = int8 {pf['int8_ms']:.1f} + fp32 {pf['fp32_ms']:.1f}"
        f" = {pf['total_ms'] / floor_ms:.2f}x floor; a 1.3x target leaves {1.3 * floor_ms - pf['total_ms']:.1f} ms"
        f" for everything else (LayerNorm, GELU, Softmax, Q/DQ, adds, token elimination)"
    )
    print(f"int8 kernels after ORT optimisation: {int8_ops}")
    prof = op_profile(int8_dir / "ckd_k0.70_int8.onnx", args.threads)
    total = sum(ms for _, ms in prof)
    print(f"ORT INT8 @0.70 kernel time by op ({total:.0f} ms): " + ", ".join(f"{k} {ms:.0f}" for k, ms in prof[:8]))
    speedup = base / rows["ort int8 @0.70"]["frame_ms"]
    print(f"ORT INT8 @0.70 vs torch FP32 eager @1.00: {speedup:.2f}x faster per frame")
    spin_up = base / rows["ort int8 spin @0.70"]["frame_ms"]
    print(f"ORT INT8 spin @0.70 vs torch FP32 eager @1.00: {spin_up:.2f}x faster per frame")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"rows": rows, "int8_gops": rate, "model_gop_k070": gops, "floor_ms": floor_ms, "policy_floor": pf},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    import sys

    from ckd.errors import CKDError

    try:
        raise SystemExit(main())
    except CKDError as exc:
        print(f"int8_speed: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
