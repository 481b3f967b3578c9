"""`ckd bench`: latency, accuracy and roofline of every backend and rung here, with a peer in the same run."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ckd_cli.common import float_list

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ckd" / "bench"
DEFAULT_PEERS = Path(os.environ.get("CKD_SHARED", "../shared")) / "peers" / "nanotrack_v2"


def _names(text: str) -> list[str]:
    return [v.strip().lower() for v in text.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark latency and accuracy of backends and keep-ratio rungs (with a peer tracker)",
        description="Track the same in-memory frames with every (model, backend, precision, keep ratio) and report "
        "per-frame p50/p95/p99 for preprocess, model and the whole tracker step, FPS, peak memory, success AUC and "
        "precision, the model's GMACs and its fraction of this machine's measured GEMM ceiling. Ratios are against "
        "a baseline measured in the same run (each model's torch FP32 row at its highest keep ratio). ONNX graphs "
        "are exported (and quantized) into --cache-dir when needed.",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="PATH",
        help="a checkpoint to benchmark (.safetensors + .json, or official .pth.tar); repeatable",
    )
    p.add_argument(
        "--model",
        type=_names,
        default=None,
        metavar="NAMES",
        help="comma list of 'demo' (the shipped student) and/or presets with random weights (base, small, tiny, "
        "nano: the architecture's latency); default: demo when no --checkpoint is given",
    )
    p.add_argument(
        "--backends", type=_names, default="torch,onnxruntime", help="torch,onnxruntime,tensorrt (%(default)s)"
    )
    p.add_argument(
        "--precisions", type=_names, default="fp32,int8", help="fp32,int8,fp16 where a backend has it (%(default)s)"
    )
    p.add_argument(
        "--keep-ratios",
        type=float_list("keep ratios"),
        default=None,
        help="rungs to measure (default 1.0,0.7; with --model-dir: the folder's own rungs)",
    )
    p.add_argument("--frames", type=int, default=50, help="frames in the clip; the first initialises (%(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed tracker updates per configuration (%(default)s)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every runtime (default: all usable)")
    p.add_argument("--peers", action="store_true", help="also run OpenCV TrackerNano (NanoTrack v2) on the same frames")
    p.add_argument("--peers-dir", type=Path, default=DEFAULT_PEERS, help="NanoTrack v2 ONNX folder (%(default)s)")
    p.add_argument(
        "--eval",
        default=None,
        metavar="DATASET",
        help="BENCHMARK:ROOT (e.g. lasher:/data/LasHeR/testingset): frames and ground truth of a real sequence "
        "instead of the synthetic clip",
    )
    p.add_argument("--eval-sequence", default=None, metavar="NAME", help="sequence of --eval (default: the first)")
    p.add_argument("--seed", type=int, default=0, help="synthetic clip seed (%(default)s)")
    p.add_argument(
        "--roofline-seconds",
        type=float,
        default=0.5,
        help="seconds per GEMM ceiling probe at start and end, half that before and after each row; 0 skips "
        "(%(default)s)",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --backends tensorrt alone: benchmark the engines `ckd build` selected for this export on the "
        "device (JetPack Python, no torch): end-to-end and GPU latency per rung, FPS, power, nvpmodel and clocks",
    )
    p.add_argument("--cuda-graphs", action="store_true", help="--model-dir: replay each rung as a CUDA graph")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="exported/quantized graphs (%(default)s)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the full results")
    p.add_argument("--markdown", type=Path, default=None, metavar="OUT.md", help="write the table (also printed)")
    p.add_argument("--plot", type=Path, default=None, metavar="OUT.png", help="latency-vs-accuracy scatter")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _load_models(args: argparse.Namespace) -> list:
    import torch

    from ckd.errors import CKDError
    from ckd.model.checkpoint import DEMO_STUDENT, file_sha256, load_model
    from ckd.model.config import PRESETS
    from ckd.model.network import CKDNet
    from edge.bench.suite import Model, weights_sha256

    names = args.model if args.model is not None else ([] if args.checkpoint else ["demo"])
    models = []
    for name in names:
        if name == "demo":
            models.append(Model("demo", load_model(None), file_sha256(DEMO_STUDENT), str(DEMO_STUDENT)))
        elif name in PRESETS:
            torch.manual_seed(0)
            net = CKDNet(PRESETS[name]).eval()
            models.append(Model(name, net, weights_sha256(net), f"preset {name}, random weights (seed 0)"))
        else:
            raise CKDError(f"--model {name!r}: expected demo or one of {', '.join(PRESETS)}")
    for path in args.checkpoint:
        models.append(Model(Path(path).stem, load_model(path), file_sha256(path), str(path)))
    if not models:
        raise CKDError("nothing to benchmark: give --checkpoint or --model")
    return models


def run_device(args: argparse.Namespace) -> int:
    """`ckd bench --backends tensorrt --model-dir DIR`: the on-device TensorRT benchmark (no torch imported)."""
    from ckd.errors import CKDError
    from edge.trt.bench import bench_tensorrt, markdown, write_reports

    if args.backends != ["tensorrt"]:
        raise CKDError("--model-dir benchmarks built TensorRT engines: use it with --backends tensorrt alone")
    if args.frames < 2 or args.warmup < 0:
        raise CKDError("--frames must be >= 2 and --warmup >= 0")
    doc = bench_tensorrt(
        args.model_dir,
        frames=args.frames,
        warmup=args.warmup,
        keep_ratios=sorted(set(args.keep_ratios)) if args.keep_ratios else None,  # None: the folder's rungs
        cuda_graphs=args.cuda_graphs,
        seed=args.seed,
    )
    print(markdown(doc))
    write_reports(doc, args.json, args.markdown)
    return 0


def run(args: argparse.Namespace) -> int:
    import sys

    from ckd.errors import CKDError

    if args.model_dir is not None:
        return run_device(args)
    keep_ratios = args.keep_ratios if args.keep_ratios else [1.0, 0.7]
    from edge.bench import env, report
    from edge.bench.clip import dataset_clip, synthetic_clip
    from edge.bench.roofline import best_ceilings, count_macs, gemm_ceilings
    from edge.bench.suite import BACKEND_PRECISIONS, Spec, default_threads, run_suite

    for b in args.backends:
        if b not in BACKEND_PRECISIONS:
            raise CKDError(f"--backends: unknown {b!r}; choose from {', '.join(BACKEND_PRECISIONS)}")
    if args.frames < 2 or args.warmup < 0:
        raise CKDError("--frames must be >= 2 and --warmup >= 0")
    threads = args.threads or default_threads()
    import torch

    torch.set_num_threads(threads)
    models = _load_models(args)
    for m in models:
        for r in keep_ratios:
            m.cfg.keep_ratios(r)  # validates each rung
    clip = (
        dataset_clip(args.eval, args.frames, args.eval_sequence)
        if args.eval
        else synthetic_clip(args.frames, args.seed)
    )
    spec = Spec(
        models=models,
        backends=args.backends,
        precisions=args.precisions,
        keep_ratios=sorted(set(keep_ratios), reverse=True),
        warmup=args.warmup,
        threads=threads,
        cache_dir=args.cache_dir,
        peers_dir=args.peers_dir if args.peers else None,
        probe_seconds=args.roofline_seconds / 2,
    )
    load_before = os.getloadavg()
    probe = args.roofline_seconds > 0
    before = gemm_ceilings(args.roofline_seconds, threads) if probe else {}
    rows, notes = run_suite(spec, clip, progress=not args.quiet)
    ceilings = best_ceilings(before, gemm_ceilings(args.roofline_seconds, threads)) if probe else {}
    if not rows:
        raise CKDError("no configuration could run here: " + "; ".join(notes))
    report.add_ratios(rows)
    report.add_roofline(rows, ceilings)
    per_model = {
        m.label: {f"{r:.2f}": round(count_macs(m.cfg, r).thop_macs / 1e9, 3) for r in spec.keep_ratios} for m in models
    }
    doc = {
        "argv": sys.argv[1:],
        "environment": env.environment({m.label: m.sha256 for m in models}, threads)
        | {"load_average_before": load_before, "load_average_after": os.getloadavg()},
        "roofline": {**ceilings, "gmacs_thop": per_model},
        "clip": {"name": clip.name, "frames": len(clip) - 1, "size": list(clip.load(0)[0].shape[1::-1])},
        "warmup": args.warmup,
        "rows": rows,
        "notes": notes,
    }
    table = report.markdown(doc)
    print(table)
    if args.json:
        report.write_json(args.json, doc)
    if args.markdown:
        from ckd.atomic import write_text_atomic

        write_text_atomic(args.markdown, table)
    if args.plot:
        report.plot(doc, args.plot)
    return 0
