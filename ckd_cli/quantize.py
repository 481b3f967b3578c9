"""`ckd quantize`: INT8 Q/DQ graphs from an export folder and a calibration set, with an optional fidelity gate."""

from __future__ import annotations

import argparse

from ckd_cli.calibrate import add_clip_args
from ckd_cli.common import float_list
from quantize.gate_limits import EVAL_FRAMES, EVAL_SEED, EVAL_SEQUENCES, Thresholds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="INT8-quantize exported rungs (explicit Q/DQ) and gate them against FP32",
        description="Quantize every FP32 rung of an export folder to INT8 (explicit Q/DQ, per-channel weights) "
        "using a calibration set from `ckd calibrate`, in the INT8 format that is exact on the target CPU "
        "(--cpu-target) and a precision tier (--tier; quantize/policy.py). With --gate, compare the FP32 and INT8 "
        "graphs on held-out evaluation clips; rungs outside the thresholds are removed and the command fails "
        "(exit 2, naming the worst); with --tier auto and --gate, quantize with every tier, time them here and keep "
        "the fastest that passes.",
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
    g = p.add_argument_group(
        "fidelity gate",
        "Both models get identical crops (around the previous ground-truth box, or where the FP32 tracker "
        "looked when there is no ground truth) and their outputs are compared crop by crop; with ground truth, "
        "accuracy drops are paired over sequences with a bootstrap interval and fail only when the whole interval "
        "lies above the limit. Rungs that fail are removed from OUT/manifest.json (listed under 'gate'), so "
        "nothing runs them; defaults and their measured error rates: docs/fidelity.md.",
    )
    g.add_argument("--gate", action="store_true", help="run the FP32-vs-INT8 fidelity gate after quantizing")
    add_clip_args(g, "eval-", sequences=EVAL_SEQUENCES, length=EVAL_FRAMES, seed=EVAL_SEED)  # held out
    defaults = Thresholds()
    for flag, name, what in (
        ("--min-iou", "min_iou_agreement", "min median box IoU on identical crops"),
        ("--min-cosine", "min_score_cosine", "min mean score-map cosine"),
        ("--max-peak-moved", "max_peak_moved", "max fraction of crops whose score-map peak moves to another cell"),
        ("--max-auc-drop", "max_auc_drop", "allowed success-AUC drop, points"),
        ("--max-precision-drop", "max_precision_drop", "allowed precision (20 px) drop, points"),
        ("--confidence", "confidence", "bootstrap interval of the accuracy drops"),
    ):
        default = getattr(defaults, name)
        g.add_argument(flag, dest=name, type=float, metavar="X", default=default, help=f"{what} ({default:g})")
    g.add_argument(
        "--free-running",
        action="store_true",
        help="accuracy runs without re-initialising after a failure (default: VOT-style reset on failure)",
    )
    g.add_argument("--report", default=None, metavar="JSON", help="gate report path (default OUT/fidelity.json)")
    g.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from calibration.sources import open_clips
    from ckd.atomic import write_text_atomic
    from ckd.errors import CKDError
    from edge.int8 import quantize_export
    from edge.int8_tiers import quantize_gated, tiers_to_try
    from quantize.fidelity import worst_rung

    fixed = args.engine == "modelopt" or args.fmt == "trt"  # TensorRT-style graphs: conservative only
    if args.fmt == "trt" and args.engine == "modelopt":
        raise CKDError("--engine modelopt does not apply to --format trt (the kit's TensorRT Q/DQ quantizer runs)")
    if fixed and args.tier in ("balanced", "aggressive"):
        raise CKDError(f"--tier {args.tier} needs --format ort --engine ort: these graphs are conservative only")
    limits = Thresholds(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Thresholds)})
    if not 0.0 < limits.confidence < 1.0:
        raise CKDError(f"--confidence {limits.confidence:g}: must lie between 0 and 1")
    report_path = Path(args.report) if args.report else Path(args.out) / "fidelity.json"
    if report_path.is_file():
        report_path.unlink()  # an old verdict must not outlive this run
    quantize_args = {"keep_ratios": args.keep_ratios, "engine": args.engine, "method": args.method}
    quantize_args.update(fmt=args.fmt, cpu_target=args.cpu_target)
    if not args.gate:
        tier = "conservative" if args.tier == "auto" else args.tier  # faster tiers only behind the gate
        manifest = quantize_export(args.onnx, args.calib, args.out, **quantize_args, tier=tier, progress=True)
        print(
            f"wrote {len(manifest.rungs)} INT8 rungs ({_record(manifest)}) and manifest.json to {args.out} (not gated)"
        )
        return 0
    clips = open_clips(args.eval_benchmark, args.eval_data, args.eval_sequences, args.eval_length, args.eval_seed)
    reset = not args.free_running
    tiers = tiers_to_try("conservative" if fixed and args.tier == "auto" else args.tier)
    search = quantize_gated(
        args.onnx,
        args.calib,
        args.out,
        clips,
        limits,
        tiers,
        args.threads,
        report=report_path,
        reset_on_failure=reset,
        **quantize_args,
    )
    gated, results = search.manifest, search.results
    for r in results:
        print(
            f"k={r.keep_ratio:.2f}: {_summary(r, limits)}: "
            + ("FAIL " + "; ".join(r.failures) if r.failures else "pass")
        )
    report = {
        "fp32": str(args.onnx),
        "int8": str(args.out),
        "calibration": gated.calibration,
        "eval": {
            "benchmark": args.eval_benchmark,
            "data": args.eval_data,
            "clips": [c.name for c in clips],
            "crops": "ground-truth centred" if all(c.gt is not None for c in clips) else "FP32 tracker's",
            "reset_on_failure": reset,
        },
        "thresholds": vars(limits),
        "rungs": [r.to_dict() for r in results],
        "tiers_tried": search.tried,
    }
    write_text_atomic(report_path, json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(f"wrote {report_path}")
    kept = ", ".join(f"{r.keep_ratio:.2f}" for r in gated.rungs) or "none"
    print(f"wrote manifest.json to {args.out} ({_record(gated)}): INT8 rungs that passed: {kept}")
    worst = worst_rung(results)
    if worst:
        raise CKDError(
            f"fidelity gate failed for {len(gated.failed_gate())} rung(s), removed from the manifest; worst "
            f"k={worst.keep_ratio:.2f}: {'; '.join(worst.failures)}"
        )
    return 0


def _record(manifest) -> str:
    """`tier X, FORMAT for --cpu-target T` from an INT8 manifest."""
    c = manifest.calibration or {}
    return f"tier {c.get('tier')}, {c.get('int8_format')} for --cpu-target {c.get('cpu_target')}"


def _summary(r, limits: Thresholds) -> str:
    """One line of figures for a rung: per-crop agreement, then the paired accuracy drops when there is truth."""
    text = (
        f"{r.crops} crops, median IoU {r.iou_agreement_median:.3f}, peak moved {r.peak_moved_fraction:.1%}, "
        f"cosine {r.score_cosine_mean:.3f}"
    )
    if not r.sequences:
        return text + ", accuracy n/a (no ground truth)"
    ci = f"{limits.confidence:.0%} interval"
    auc = "AUC with resets" if r.reset_on_failure else "AUC"
    return (
        text + f"; {auc} {100 * r.auc_fp32:.1f} -> {100 * r.auc_int8:.1f} (drop {r.auc_drop_points:.2f}, {ci} "
        f"[{r.auc_drop_ci[0]:.2f}, {r.auc_drop_ci[1]:.2f}]), precision drop {r.precision_drop_points:.2f} "
        f"[{r.precision_drop_ci[0]:.2f}, {r.precision_drop_ci[1]:.2f}] over {r.sequences} sequences"
    )
