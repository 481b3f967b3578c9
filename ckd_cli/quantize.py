"""`ckd quantize`: INT8 Q/DQ graphs from an export folder and a calibration set, with an optional fidelity gate."""

from __future__ import annotations

import argparse

from ckd_cli.calibrate import add_clip_args
from ckd_cli.common import float_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="INT8-quantize exported rungs (explicit Q/DQ) and gate them against FP32",
        description="Quantize every FP32 rung of an export folder to INT8 (explicit Q/DQ, per-channel weights) "
        "using a calibration set from `ckd calibrate`, in the INT8 format that is exact on the target CPU "
        "(--cpu-target) and a precision tier (--tier; quantize/policy.py). With --gate, run FP32 and INT8 trackers "
        "over held-out evaluation clips and fail (exit 2, naming the worst rung) outside the thresholds; with "
        "--tier auto and --gate, quantize with every tier, time them here and keep the fastest that passes.",
    )
    p.add_argument("--onnx", required=True, metavar="DIR", help="FP32 export folder (from `ckd export`)")
    p.add_argument("--calib", required=True, metavar="DIR", help="calibration set (from `ckd calibrate`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for the INT8 rungs and manifest.json")
    p.add_argument(
        "--keep-ratios", type=float_list("keep ratios"), default=None, help="rungs to quantize (default: all)"
    )
    p.add_argument(
        "--engine",
        choices=["ort", "modelopt"],
        default="ort",
        help="ort: ONNX Runtime quantize_static QDQ (default); modelopt: NVIDIA Model Optimizer ONNX PTQ if installed",
    )
    p.add_argument(
        "--format",
        dest="fmt",
        choices=["ort", "trt"],
        default="ort",
        help="ort: ONNX Runtime CPU graphs (default); trt: TensorRT explicit quantization (symmetric INT8, zero "
        "point 0, float bias, per-channel weights) for the export's TensorRT generations, checked offline as "
        "`ckd check-trt` does, plus a calibration cache for the TensorRT 8.x calibrator route",
    )
    p.add_argument(
        "--method",
        choices=["minmax", "percentile", "entropy"],
        default="percentile",
        help="activation range calibration (default percentile 99.99)",
    )
    p.add_argument(
        "--cpu-target",
        choices=["auto", "vnni", "avx2", "arm"],
        default="auto",
        help="CPU the INT8 graphs will run on (ONNX Runtime): vnni = x86 with AVX-512 VNNI or AVX-VNNI (full-range "
        "weights), avx2 = any other x86 (7-bit weights: its U8S8 kernels saturate at full range), arm = Arm64 "
        "(full range); auto = this machine (default). Recorded in the manifest and checked when a graph is loaded",
    )
    p.add_argument(
        "--tier",
        choices=["auto", "conservative", "balanced", "aggressive"],
        default="auto",
        help="precision tier: conservative = INT8 linear layers and convolutions; balanced = also the attention "
        "core; aggressive = also Softmax. auto (default) = with --gate the tier measured fastest here among "
        "those that pass, else conservative",
    )
    g = p.add_argument_group("fidelity gate")
    g.add_argument("--gate", action="store_true", help="run the FP32-vs-INT8 fidelity gate after quantizing")
    # Seed distinct from calibration's (held out). 8 x 80 frames: with 4 x 60 one tracker drifting on one clip
    # moved the success AUC by several points either way.
    add_clip_args(g, "eval-", sequences=8, length=80, seed=1000)
    g.add_argument("--min-iou", type=float, default=0.9, help="min median FP32/INT8 IoU agreement (default 0.9)")
    g.add_argument("--max-auc-drop", type=float, default=1.0, help="max success-AUC drop in points (default 1.0)")
    g.add_argument(
        "--min-cosine", type=float, default=0.0, help="min mean score-map cosine, mean removed (default 0 = off)"
    )
    g.add_argument("--report", default=None, metavar="JSON", help="gate report path (default OUT/fidelity.json)")
    g.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from calibration.sources import open_clips
    from ckd.atomic import write_text_atomic
    from ckd.errors import CKDError
    from edge.int8 import quantize_export
    from edge.int8_tiers import quantize_gated, tiers_to_try
    from quantize.fidelity import Thresholds, worst_rung

    quantize_args = {"keep_ratios": args.keep_ratios, "engine": args.engine, "method": args.method}
    quantize_args.update(fmt=args.fmt, cpu_target=args.cpu_target)
    if not args.gate:
        tier = "conservative" if args.tier == "auto" else args.tier  # faster tiers only behind the gate
        manifest = quantize_export(args.onnx, args.calib, args.out, **quantize_args, tier=tier, progress=True)
        print(f"wrote {len(manifest.rungs)} INT8 rungs ({_record(manifest)}) and manifest.json to {args.out}")
        return 0
    limits = Thresholds(args.min_iou, args.max_auc_drop, args.min_cosine)
    clips = open_clips(args.eval_benchmark, args.eval_data, args.eval_sequences, args.eval_length, args.eval_seed)
    fixed = args.engine == "modelopt" or args.fmt == "trt"  # TensorRT-style graphs: conservative only
    tiers = tiers_to_try("conservative" if fixed and args.tier == "auto" else args.tier)
    search = quantize_gated(args.onnx, args.calib, args.out, clips, limits, tiers, args.threads, **quantize_args)
    manifest, results = search.manifest, search.results
    print(f"wrote {len(manifest.rungs)} INT8 rungs ({_record(manifest)}) and manifest.json to {args.out}")
    for r in results:
        verdict = "FAIL " + "; ".join(r.failures) if r.failures else "pass"
        accuracy = (
            f"AUC {100 * r.auc_fp32:.2f} -> {100 * r.auc_int8:.2f} (drop {r.auc_drop_points:.2f} pt), "
            f"precision {100 * r.precision_fp32:.2f} -> {100 * r.precision_int8:.2f}"
            if r.auc_fp32 == r.auc_fp32  # NaN when no clip has ground truth (image pairs)
            else "AUC/precision n/a (no ground truth)"
        )
        print(
            f"k={r.keep_ratio:.2f}: IoU agreement median {r.iou_agreement_median:.3f}, {accuracy}, "
            f"score cosine {r.score_cosine_mean:.3f}: {verdict}"
        )
    report = {
        "fp32": str(args.onnx),
        "int8": str(args.out),
        "calibration": manifest.calibration,
        "eval": {"benchmark": args.eval_benchmark, "data": args.eval_data, "clips": [c.name for c in clips]},
        "thresholds": vars(limits),
        "rungs": [r.to_dict() for r in results],
        "tiers_tried": search.tried,
    }
    path = Path(args.report) if args.report else Path(args.out) / "fidelity.json"
    write_text_atomic(path, json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(f"wrote {path}")
    worst = worst_rung(results)
    if worst:
        raise CKDError(f"fidelity gate failed; worst rung k={worst.keep_ratio:.2f}: {'; '.join(worst.failures)}")
    return 0


def _record(manifest) -> str:
    """`tier X, FORMAT for --cpu-target T` from an INT8 manifest."""
    c = manifest.calibration or {}
    return f"tier {c.get('tier')}, {c.get('int8_format')} for --cpu-target {c.get('cpu_target')}"
