"""`ckd run`: track from two sensors (RGB + thermal) through GStreamer: live, holding a target frame rate, or
replaying a recorded clip frame by frame."""

from __future__ import annotations

import argparse

from ckd_cli.common import add_checkpoint_arg, float_list

URI_HELP = (
    "v4l2:///dev/videoN[?format=YUY2|MJPEG|NV12|GRAY16_LE&width=&height=&fps=&telemetry=ROWS], csi://N, "
    "file:///path (video, or a folder of numbered JPEG/PNG/TIFF frames, ?fps=), rtsp://..., "
    "synthetic://?seed=S&fps=&frames=&width=&height="
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="track from an RGB + thermal sensor pair (GStreamer), write JSONL, overlay video, latency report",
        description="Capture both sensors with GStreamer, pair their frames, map thermal to 8 bits (the mapping "
        "training uses; 16-bit, 8-bit grey and grey saved as 3 channels are recognised from the data), register "
        "thermal onto RGB, and track with an adaptive keep-ratio rung that holds --target-fps. Live sensors give "
        "the newest pair (frames the loop cannot keep up with are dropped). Recorded clips (file://: a video, or "
        "folders of numbered frames) are replayed: every frame of both, paired by frame number (folders) or "
        "timestamp (videos), as fast as the backend allows; --realtime plays them like live sensors instead. "
        "Writes OUT/track.jsonl (one line per source frame, flushed), OUT/overlay.mp4 (RGB | thermal with box, "
        "score, FPS, rung), OUT/latency.json and OUT/controller.csv; --results also writes the boxes in the "
        f"benchmark text format for `ckd eval`. SIGINT and SIGTERM finish every output. Sensor URIs: {URI_HELP}.",
        epilog="example (replay a recorded clip and score it against its ground truth, VTUAV layout: "
        "clips/test_ST/seq/{rgb,ir}/ + rgb.txt, ir.txt): ckd run --rgb file://clips/test_ST/seq/rgb "
        "--tir file://clips/test_ST/seq/ir --model-dir out/model --results out/res/seq.txt --out out/seq && "
        "ckd eval --benchmark vtuav --gt clips/test_ST --results out/res",
    )
    p.add_argument("--rgb", required=True, help="RGB sensor URI")
    p.add_argument("--tir", required=True, help="thermal sensor URI")
    add_checkpoint_arg(p)
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "onnxruntime", "tensorrt"],
        default="auto",
        help="runtime (default auto: TensorRT for --model-dir with built engines, else ONNX Runtime; torch for a "
        "checkpoint)",
    )
    p.add_argument(
        "--model-dir",
        "--model",
        dest="model_dir",
        default=None,
        help="exported model folder (ONNX Runtime, or TensorRT with engines from `ckd build`)",
    )
    p.add_argument("--precision", default=None, help="engine precision for onnxruntime (default: the best exported)")
    p.add_argument("--random-preset", default=None, help="untrained network of a preset (smoke tests only)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the runtime")
    p.add_argument(
        "--spin",
        action="store_true",
        help="ONNX Runtime: let pool threads spin while a frame is inferred (faster on big models; they stop "
        "spinning between frames)",
    )
    p.add_argument("--target-fps", type=float, default=30.0, help="frame rate to hold (default 30)")
    p.add_argument(
        "--rungs", type=float_list("--rungs"), default=None, help="keep-ratio ladder (default: the backend's)"
    )
    p.add_argument("--fixed-rung", type=float, default=None, help="disable the controller, run this keep ratio")
    p.add_argument(
        "--init",
        default=None,
        help="target box x,y,w,h in 0-based RGB pixels (default: the source's first ground-truth box, for synthetic "
        "sensors and frame folders inside a benchmark sequence)",
    )
    p.add_argument("--rig", default=None, help="thermal->RGB homography JSON from `ckd calibrate-rig`")
    p.add_argument("--out", default="out/run", help="output folder (default out/run)")
    p.add_argument("--frames", type=int, default=None, help="stop after this many processed frames")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--stall", type=float, default=1.0, help="seconds without frames before a sensor counts as lost")
    p.add_argument(
        "--first-frame-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="a sensor that has delivered no frame S seconds after the start ends the run with an error (default 10)",
    )
    p.add_argument("--tolerance-ms", type=float, default=None, help="pairing tolerance (default half slower period)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--realtime",
        action="store_true",
        help="play recorded clips like live sensors (paced at their fps, the newest pair, drops): for testing the "
        "controller",
    )
    mode.add_argument("--replay", action="store_true", help="replay synthetic sensors frame by frame too")
    p.add_argument(
        "--results",
        default=None,
        metavar="FILE",
        help="also write the boxes as FILE: one line per source frame, x,y,w,h 1-based (0,0,0,0: not tracked), "
        "for `ckd eval --results` (name it <sequence>.txt in a results folder)",
    )
    p.add_argument("--no-overlay", action="store_true", help="do not encode the overlay video")
    p.add_argument("--display", action="store_true", help="show the overlay (and select the target) on a display")
    p.add_argument("--udp", default=None, help="also stream the overlay as RTP/H.264 to host:port")
    p.add_argument("--print-pipeline", action="store_true", help="print the GStreamer descriptions and exit")
    p.set_defaults(func=run)


def _backend(args: argparse.Namespace):
    from edge.backends import make_backend

    if args.random_preset:
        from ckd.model.config import preset
        from ckd.model.network import CKDNet
        from ckd.track.torch_backend import TorchBackend

        return TorchBackend(CKDNet(preset(args.random_preset)).eval(), threads=args.threads)
    source = args.model_dir if args.model_dir else args.checkpoint
    if args.backend in ("onnxruntime", "tensorrt") and not args.model_dir:
        from ckd.errors import CKDError

        raise CKDError(f"--backend {args.backend} needs --model-dir (made by `ckd export`)")
    backend = make_backend(args.backend, source, threads=args.threads, precision=args.precision, spin=args.spin)
    note = backend.manifest.gate_note() if hasattr(backend, "manifest") else None
    if note:
        print(f"{note}; not used")
    return backend


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    from ckd.errors import CKDError
    from ckd_cli.common import parse_floats

    if text is None:
        return None
    box = parse_floats(text, "--init")
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise CKDError(f"--init must be x,y,w,h with w, h > 0, got {text!r}")
    return tuple(box)


def run(args: argparse.Namespace) -> int:
    from ckd.track.tracker import Tracker
    from pipelines.loop import DualSensorLoop, LoopOptions
    from pipelines.registration import RigCalibration
    from pipelines.report import summary_line
    from pipelines.signals import EXIT_CODES
    from pipelines.source import launch_string
    from pipelines.uri import parse_uri

    rgb, tir = parse_uri(args.rgb, "rgb"), parse_uri(args.tir, "tir")
    realtime = True if args.realtime else False if args.replay else None
    if args.print_pipeline:
        replay = not args.realtime and (args.replay or (rgb.recorded and tir.recorded))
        print(f"rgb: {launch_string(rgb, replay=replay)}")
        print(f"tir: {launch_string(tir, replay=replay)}")
        return 0
    init = parse_box(args.init)
    calibration = RigCalibration.load(args.rig) if args.rig else None
    backend = _backend(args)
    try:  # from here on the backend is closed whatever fails (the loop's set-up raises on bad sources)
        rungs = (args.fixed_rung,) if args.fixed_rung is not None else tuple(args.rungs or backend.keep_ratios)
        options = LoopOptions(
            target_fps=args.target_fps,
            max_frames=args.frames,
            duration_s=args.duration,
            init_box=init,
            tolerance_s=args.tolerance_ms / 1e3 if args.tolerance_ms else None,
            stall_s=args.stall,
            first_frame_s=args.first_frame_timeout,
            rungs=tuple(sorted(rungs, reverse=True)),
            adaptive=len(rungs) > 1,
            realtime=realtime,
            overlay=not args.no_overlay,
            udp=args.udp,
            display=args.display,
            results=args.results,
        )
        loop = DualSensorLoop(rgb, tir, Tracker(backend), args.out, options, calibration)
        report = loop.run()
    finally:
        if hasattr(backend, "close"):  # TensorRT: CUDA graphs, events, stream and pinned buffers
            backend.close()
    print(summary_line(report, args.out))
    for role, src in report["sources"].items():
        if src["error"]:
            print(f"{role}: {src['error']}")
    return EXIT_CODES.get(report["stopped_by"], 0)
