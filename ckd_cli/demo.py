"""`ckd demo`: the embedded default end to end — demo student -> ONNX -> calibrate -> INT8 -> GStreamer run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthetic dual-sensor clip through the GStreamer pipeline on ONNX Runtime INT8",
        description="Export the demo student (or --checkpoint) to ONNX rungs, calibrate on tracker-in-the-loop "
        "synthetic crops, quantize to INT8 (gated against FP32), then run a synthetic RGB + thermal (16-bit) "
        "clip through the GStreamer pipeline with the adaptive keep-ratio controller. Writes OUT/overlay.mp4, "
        "OUT/track.jsonl and OUT/latency.json. Finished steps are reused on a second run (delete OUT to redo).",
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--checkpoint", default=None, help="model to run (default: the shipped demo student)")
    p.add_argument("--frames", type=int, default=300, help="frames in the synthetic clip (default 300)")
    p.add_argument("--fps", type=float, default=30.0, help="sensor frame rate and target FPS (default 30)")
    p.add_argument("--seed", type=int, default=7, help="synthetic clip seed (default 7; training used others)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: ORT's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ckd.errors import CKDError
    from ckd_cli.main import main
    from edge.manifest import Manifest

    out = Path(args.out)
    fp32, calib, int8 = out / "model" / "fp32", out / "calib", out / "model" / "int8"
    ckpt = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    threads = ["--threads", str(args.threads)] if args.threads else []
    steps = [
        ("export", fp32 / "manifest.json", ["export", *ckpt, "--out", str(fp32)]),
        ("calibrate", calib / "calibration.json",
         ["calibrate", "--model", str(fp32), "--out", str(calib), "--frames", "128"]),
        ("quantize", int8 / "manifest.json",  # holds the gate's verdict; failed rungs are left out
         ["quantize", "--onnx", str(fp32), "--calib", str(calib), "--out", str(int8), "--gate", *threads]),
    ]  # fmt: skip
    if (int8 / "manifest.json").is_file() and (Manifest.load(int8, verify=False).gate or {}).get("pending"):
        (int8 / "manifest.json").unlink()  # the gate was interrupted: quantize again
    for i, (name, done, argv) in enumerate(steps, 1):
        if done.is_file():
            print(f"[{i}/4] {name}: reusing {done.parent}")
            continue
        print(f"[{i}/4] {name}: ckd {' '.join(argv)}", flush=True)
        if main(argv) != 0 and not (name == "quantize" and done.is_file()):
            raise CKDError(f"demo step '{name}' failed (see above)")
    gated = Manifest.load(int8, verify=False)
    if gated.gate is None:
        raise CKDError(f"{int8}: INT8 rungs that were never gated; delete {out} and run the demo again")
    if not gated.rungs:
        raise CKDError(f"no INT8 rung passed the fidelity gate ({int8}); the demo will not run an unchecked model")
    # The INT8 folder lists only the rungs that passed; `ckd run` names the ones that failed.
    uri = f"synthetic://?seed={args.seed}&fps={args.fps:g}&frames={args.frames}"
    argv = ["run", "--rgb", uri, "--tir", uri, "--backend", "onnxruntime", "--model-dir", str(int8),
            "--target-fps", f"{args.fps:g}", "--out", str(out), *threads]  # fmt: skip
    print(f"[4/4] run: ckd {' '.join(argv)}", flush=True)
    if main(argv) != 0:
        raise CKDError("demo step 'run' failed (see above)")
    report = out / "latency.json"
    if report.is_file():
        print(json.dumps(json.loads(report.read_text()), indent=2)[:2000])
    print(f"demo outputs: {out / 'overlay.mp4'}, {out / 'track.jsonl'}, {report}")
    return 0
