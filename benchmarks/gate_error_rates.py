"""The fidelity gate's error rates, measured: how often it fails a model it should pass, and passes one it should fail.

Over several evaluation seeds (held-out synthetic clips), the gate (`edge.int8.fidelity_many`, the defaults of
`ckd quantize --gate`) compares the FP32 export of a checkpoint (default: the shipped demo student) with

- `self`:   the FP32 graphs themselves (must pass every time),
- `noise`:  a copy whose weight tensors carry Gaussian noise of `--noise` x their std, a new draw per seed
            (far below INT8 rounding: should pass),
- `int8`:   INT8 graphs calibrated on tracker-sampled synthetic crops (as `ckd calibrate` + `ckd quantize`),
- `broken`: INT8 graphs calibrated on constant gray frames (must fail every time).

It prints every rung check with its figures, the false-fail rate (`self`, `noise`), the miss rate (`broken`) and
whether each `int8` rung got the same verdict on every seed, and writes them all with `--json`.

    .venv/bin/python benchmarks/gate_error_rates.py                  # 5 seeds x 5 rungs x 8 clips x 80 frames
    .venv/bin/python benchmarks/gate_error_rates.py --seeds 1000,11,7 --keep-ratios 1.0,0.7
    .venv/bin/python benchmarks/gate_error_rates.py --benchmark pairs --data ../shared/data/llvip_pairs --seeds 0

Exported / calibrated / quantized graphs are cached in --work and reused when they belong to the same checkpoint
(INT8: also the same --calib-frames and CPU target, both in the folder name).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

CANDIDATES = {
    "self": "FP32 vs itself",
    "noise": "FP32 + weight noise",
    "int8": "INT8, tracker calibration",
    "broken": "INT8, constant-frame calibration",
}
SHOULD_PASS, SHOULD_FAIL = ("self", "noise"), ("broken",)


def noisy_copy(src: Path, dst: Path, relative: float, seed: int) -> Path:
    """Copy an export with Gaussian noise of `relative` x std added to every weight tensor (float, >= 2-D)."""
    import onnx
    from onnx import numpy_helper

    from edge.manifest import Manifest, Rung

    manifest = Manifest.load(src)
    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rungs = []
    for rung in manifest.rungs:
        graph = onnx.load(str(manifest.path(rung)))
        for init in graph.graph.initializer:
            w = numpy_helper.to_array(init)
            if w.dtype == np.float32 and w.ndim >= 2:
                w = w + (rng.standard_normal(w.shape) * relative * float(w.std())).astype(np.float32)
                init.CopyFrom(numpy_helper.from_array(w, init.name))
        onnx.save(graph, str(dst / rung.file))
        rungs.append(Rung.from_file(dst / rung.file, rung.keep_ratio, rung.precision))
    dataclasses.replace(manifest, rungs=rungs, directory=None).save(dst)
    return dst


def _cached(folder: Path, checkpoint_sha256: str, keep_ratios) -> bool:
    from ckd.errors import CKDError
    from edge.manifest import Manifest

    try:
        m = Manifest.load(folder)
    except CKDError:
        return False
    return m.checkpoint_sha256 == checkpoint_sha256 and set(m.keep_ratios) == set(keep_ratios)


def prepare(args) -> tuple[Path, Path, dict[str, Path]]:
    """(work folder, FP32 export, INT8 graphs) for the checkpoint: the export, the two calibration sets and their
    INT8 graphs are made in --work, or reused when cached."""
    from calibration.sampler import sample_crops
    from calibration.sources import Clip, synthetic_clips
    from calibration.store import write_calibration
    from ckd.model.checkpoint import DEMO_STUDENT, file_sha256, load_model
    from edge.backends.onnxruntime import OrtBackend
    from edge.export import export_rungs
    from edge.int8 import quantize_export
    from quantize.cpu_target import host_target

    ckpt = Path(args.checkpoint) if args.checkpoint else DEMO_STUDENT
    sha = file_sha256(ckpt)
    work = Path(args.work).expanduser() / sha[:12]
    fp32 = work / "fp32"
    if not _cached(fp32, sha, args.keep_ratios):
        export_rungs(load_model(args.checkpoint), fp32, args.keep_ratios, sha, verify=False, progress=True)
    backend = OrtBackend(fp32, args.threads, precision="fp32")
    identity = {"name": backend.cfg.name, "checkpoint_sha256": sha}
    # `ckd calibrate` defaults: synthetic seed 0, 8 x 64 frames, every 2nd tracked frame.
    gray = np.full((256, 320, 3), 128, np.uint8)
    flat = Clip("constant", 64, lambda i: (gray, gray[..., 0]), np.array([140.0, 100, 40, 40]))
    sources = {"int8": (synthetic_clips(8, 64, seed=0), "synthetic", 2), "broken": ([flat], "constant", 1)}
    out, target = {}, host_target()  # the INT8 format depends on the CPU (CKD_CPUINFO under an emulator)
    for name, (clips, label, every) in sources.items():
        key = f"{name}-{args.calib_frames}crops-{target}"
        calib, int8 = work / f"calib-{key}", work / key
        if not _cached(int8, sha, args.keep_ratios):
            crops = sample_crops(backend, clips, args.calib_frames, every=every, progress=True)
            write_calibration(calib, crops, label, 0, identity)
            quantize_export(fp32, calib, int8, progress=True, cpu_target=target)
        out[name] = int8
    return work, fp32, out


def _rate(results: dict[str, list], fails: bool) -> dict:
    """Rung checks over all seeds, how many failed, and the rate of the wrong verdict (fails=True: should fail)."""
    checks = [r for rungs in results.values() for r in rungs]
    failed = sum(bool(r["failures"]) for r in checks)
    wrong = len(checks) - failed if fails else failed
    return {"checks": len(checks), "failed": failed, "wrong": wrong, "rate": wrong / len(checks) if checks else None}


def measure(args) -> dict:
    from calibration.sources import open_clips
    from edge.bench.env import cpu_info, library_versions
    from edge.int8 import fidelity_many
    from quantize.fidelity import Thresholds

    work, fp32, quantized = prepare(args)
    limits = Thresholds()
    runs: dict[str, dict[str, list]] = {name: {} for name in CANDIDATES}
    for seed in args.seeds:
        noise = noisy_copy(fp32, work / f"noise-{args.noise:g}-seed{seed}", args.noise, seed)
        candidates = {"self": fp32, "noise": noise, **quantized}
        clips = open_clips(args.benchmark, args.data, args.sequences, args.frames, seed)
        print(f"seed {seed}: gating {', '.join(candidates)} on {len(clips)} clips", flush=True)
        reset = not args.free_running
        results = fidelity_many(fp32, candidates, clips, limits, args.threads, True, reset_on_failure=reset)
        for name, rungs in results.items():
            runs[name][str(seed)] = [r.to_dict() for r in rungs]
    verdicts = {}  # per int8 rung, the verdicts it got over the seeds (one = the same on every seed)
    for k in args.keep_ratios:
        rungs = [r for by_seed in runs["int8"].values() for r in by_seed if abs(r["keep_ratio"] - k) < 1e-6]
        verdicts[f"{k:.2f}"] = sorted({"fail" if r["failures"] else "pass" for r in rungs})
    return {
        "cpu": cpu_info(),
        "libraries": library_versions(),
        "checkpoint": args.checkpoint or "demo student",
        "benchmark": args.benchmark if args.data is None else f"{args.benchmark} {args.data}",
        "keep_ratios": list(args.keep_ratios),
        "seeds": list(args.seeds),
        "sequences": args.sequences,
        "frames": args.frames,
        "noise": args.noise,
        "reset_on_failure": not args.free_running,
        "thresholds": dataclasses.asdict(limits),
        "false_fail": {name: _rate(runs[name], fails=False) for name in SHOULD_PASS},
        "miss": {name: _rate(runs[name], fails=True) for name in SHOULD_FAIL},
        "int8_verdicts": verdicts,
        "runs": runs,
    }


def report(doc: dict) -> str:
    cpu = doc["cpu"]
    lines = [
        f"CPU {cpu['model']} ({', '.join(cpu['flags'])}), onnxruntime {doc['libraries'].get('onnxruntime')}",
        f"{doc['checkpoint']}: rungs {doc['keep_ratios']}, seeds {doc['seeds']}, {doc['benchmark']}"
        + (f" ({doc['sequences']} clips x {doc['frames']} frames)" if doc["benchmark"] == "synthetic" else "")
        + f", weight noise {doc['noise']:g} x std",
        "",
        "| candidate | seed | keep | median IoU | peak moved | cosine | AUC drop [CI] | prec. drop [CI] | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    for name, by_seed in doc["runs"].items():
        for seed, rungs in by_seed.items():
            for r in rungs:
                auc, prec = (
                    "n/a"
                    if r[f"{m}_drop_points"] is None
                    else f"{r[f'{m}_drop_points']:.2f} [{', '.join(num(x, '.2f') for x in r[f'{m}_drop_ci'])}]"
                    for m in ("auc", "precision")
                )
                verdict = "FAIL: " + "; ".join(r["failures"]) if r["failures"] else "pass"
                lines.append(
                    f"| {name} | {seed} | {r['keep_ratio']:.2f} | {num(r['iou_agreement_median'], '.3f')} | "
                    f"{num(r['peak_moved_fraction'], '.1%')} | {num(r['score_cosine_mean'], '.3f')} | {auc} | "
                    f"{prec} | {verdict} |"
                )
    lines.append("")
    for name, rate in doc["false_fail"].items():
        lines.append(f"false-fail rate, {CANDIDATES[name]}: {rate['wrong']}/{rate['checks']} rung checks")
    for name, rate in doc["miss"].items():
        lines.append(f"miss rate, {CANDIDATES[name]}: {rate['wrong']}/{rate['checks']} rung checks")
    same = all(len(v) == 1 for v in doc["int8_verdicts"].values())
    per_rung = ", ".join(f"{k}: {'/'.join(v)}" for k, v in doc["int8_verdicts"].items())
    lines.append(f"{CANDIDATES['int8']}: {per_rung} ({'same' if same else 'DIFFERENT'} verdict on every seed)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ckd.errors import CKDError
    from ckd_cli.common import float_list

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="model to gate (default: the shipped demo student)")
    p.add_argument("--keep-ratios", type=float_list("keep ratios"), default=(1.0, 0.85, 0.7, 0.6, 0.5))
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 11, 7, 3, 5])
    p.add_argument("--benchmark", default="synthetic", help="evaluation clips: synthetic, pairs or a dataset layout")
    p.add_argument("--data", default=None, metavar="DIR", help="image-pair folder or dataset root (not synthetic)")
    p.add_argument("--sequences", type=int, default=8, help="evaluation clips per seed (default 8, as the gate)")
    p.add_argument("--frames", type=int, default=80, help="frames per clip (default 80, as the gate)")
    p.add_argument("--noise", type=float, default=1e-3, help="weight noise, x each tensor's std (default 1e-3)")
    p.add_argument("--free-running", action="store_true", help="accuracy runs without VOT-style resets")
    p.add_argument("--calib-frames", type=int, default=128, help="calibration crops (default 128, as `make demo`)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: ORT's)")
    p.add_argument("--work", default="~/.cache/ckd/gate_error_rates", help="cache folder for graphs")
    p.add_argument("--json", default=None, help="also write everything here")
    args = p.parse_args(argv)
    try:
        doc = measure(args)
    except CKDError as exc:
        print(f"gate_error_rates: error: {exc}", file=sys.stderr)
        return 2
    print(report(doc))
    if args.json:
        from ckd.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
