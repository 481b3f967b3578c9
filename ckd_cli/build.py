"""`ckd build`: TensorRT engines for this device from an export (one per keep-ratio rung), cached and checked."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build TensorRT engines for this device from an ONNX export",
        description="Build one TensorRT engine per keep-ratio rung of an export (manifest.json beside the ONNX "
        "rungs) on the device that will run them. Engines are cached under a key of model sha256, rung, precision, "
        "TensorRT version, device, compute capability, DLA core and (INT8 from a calibration cache) the cache's "
        "sha256, and rebuilt with a one-line reason when any of these changes. "
        "`best` builds FP16 and INT8 side by side, times both on the GPU, checks both against the reference "
        "outputs made on the host (reference.npz, from `ckd export` / `ckd flash`) and keeps the faster one that "
        "passes; an engine that fails to build or to pass is recorded with its reason in engines/selection.json and "
        "the others are kept. The graphs are the ones exported for this TensorRT (DIR or DIR/trt8.5). Runs on the "
        "device profile (JetPack Python, no torch / onnx / onnxruntime).",
    )
    p.add_argument("--onnx", required=True, metavar="DIR", help="export directory (manifest.json + ckd_k*.onnx)")
    p.add_argument(
        "--int8", default=None, metavar="DIR", help="Q/DQ export from `ckd quantize` (default: int8 rungs in --onnx)"
    )
    p.add_argument(
        "--precision",
        choices=["fp16", "int8", "best", "fp32"],
        default=None,
        help="engine precision (default: what the device profile recommends, `best` on Jetson Orin/Xavier)",
    )
    p.add_argument(
        "--dla", type=int, default=None, metavar="N", help="build for DLA core N with GPU fallback (FP16/INT8 only)"
    )
    p.add_argument("--workspace", type=int, default=1024, metavar="MB", help="builder workspace limit (default 1024)")
    p.add_argument("--cache", default=None, metavar="DIR", help="engine cache directory (default DIR/engines)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge import devices
    from edge.manifest import Manifest
    from edge.trt.build import build_all
    from edge.trt.flags import detect, import_tensorrt

    Manifest.load(args.onnx)  # checksums first: a broken export fails before anything is built
    trt = import_tensorrt()
    features = detect(trt)
    features.require_supported()
    device = devices.detect()
    device.check_supported()
    precision = args.precision or device.profile.default_precision
    print(f"device: {device.name} (sm {device.profile.compute_capability}), TensorRT {features.version}, {precision}")
    path = build_all(
        args.onnx,
        precision,
        device,
        trt,
        features,
        int8_dir=args.int8,
        cache_dir=args.cache,
        workspace_mb=args.workspace,
        dla_core=args.dla,
    )
    print(f"engines selected: {path}")
    return 0
