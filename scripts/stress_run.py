"""Run `ckd run` many times on synthetic GStreamer sensors and report every run that did not exit 0.

Each run is a fresh process (`python -m ckd_cli.main run ...`) with `PYTHONFAULTHANDLER=1`, so a native crash
(e.g. SIGSEGV, rc -11) shows up as a non-zero exit together with the Python stack of every thread; a run that
exits 0 without a report of tracked frames counts as failed too. Defaults are issue 16's check: 50 runs of 120
synthetic frames at 30 fps on an ONNX Runtime model folder (the demo student exported to a temporary folder unless
`--model-dir` is given).

    .venv/bin/python scripts/stress_run.py                         # 50 runs, prints the count of non-zero exits
    .venv/bin/python scripts/stress_run.py --runs 10 --fps 120 --model-dir out/demo/model/int8

Exit status: 0 when every run exited 0, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50, help="how many `ckd run` processes (default 50)")
    p.add_argument("--frames", type=int, default=120, help="synthetic frames per sensor and run (default 120)")
    p.add_argument("--fps", type=float, default=30.0, help="synthetic sensor frame rate (default 30)")
    p.add_argument("--size", default="640x480", help="synthetic frame size WxH (default 640x480)")
    p.add_argument("--model-dir", default=None, help="ONNX Runtime model folder (default: export the demo student)")
    p.add_argument("--rungs", default="1,0.5", help="keep-ratio rungs for `ckd run --rungs` (default 1,0.5)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per run (default 1)")
    p.add_argument("--work", default=None, help="folder for the runs' outputs, cleared per run (default: a temp dir)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before a hung run is killed (default 600)")
    p.add_argument("--json", default=None, help="also write the summary as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _ckd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ckd_cli.main", *args]


def export_model(folder: Path, rungs: str) -> Path:
    """The demo student as ONNX rungs (what `ckd export` writes)."""
    keep = ",".join(f"{float(r):.2f}" for r in rungs.split(","))
    cmd = _ckd("export", "--out", str(folder), "--keep-ratios", keep, "--no-verify")
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return folder


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name} (rc {rc})"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


def run_once(i: int, args: argparse.Namespace, model: Path, out: Path) -> dict:
    w, h = args.size.lower().split("x")
    uri = f"synthetic://?seed={i}&fps={args.fps:g}&frames={args.frames}&width={w}&height={h}"
    cmd = _ckd(
        "run", "--rgb", uri, "--tir", uri, "--backend", "onnxruntime", "--model-dir", str(model),
        "--rungs", args.rungs, "--threads", str(args.threads), "--target-fps", f"{args.fps:g}", "--out", str(out),
    )  # fmt: skip
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    if out.exists():  # a reused --work: an earlier invocation's latency.json must not count for this run
        shutil.rmtree(out)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, err = None, exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    tracked = _tracked(out / "latency.json")
    failed = rc != 0 or not tracked
    return {"run": i, "rc": rc, "tracked": tracked, "uri": uri, "failed": failed,
            "stderr_tail": "\n".join(err.splitlines()[-40:]) if failed else ""}  # fmt: skip


def _tracked(report: Path) -> int:
    try:
        return int(json.loads(report.read_text())["frames_processed"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    with tempfile.TemporaryDirectory(prefix="ckd-stress-") as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        model = Path(args.model_dir) if args.model_dir else export_model(work / "model", args.rungs)
        results = []
        for i in tqdm(range(args.runs), desc="ckd run", unit="run", disable=args.quiet, file=sys.stderr):
            results.append(run_once(i, args, model, work / f"run{i:03d}"))
    bad = [r for r in results if r["failed"]]
    for r in bad:
        what = "hung (killed after --timeout)" if r["rc"] is None else describe_exit(r["rc"])
        what += "" if r["tracked"] else ", no frame tracked"
        print(f"run {r['run']}: {what}: {r['uri']}\n{r['stderr_tail']}\n", file=sys.stderr)
    summary = {"runs": len(results), "ok": len(results) - len(bad), "failed": len(bad), "failures": bad}
    summary["tracked_per_run"] = [r["tracked"] for r in results]
    summary.update(frames=args.frames, fps=args.fps, size=args.size, model_dir=str(args.model_dir or "demo student"))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(results)} runs of `ckd run` ({args.frames} synthetic frames at {args.fps:g} fps): "
          f"{len(results) - len(bad)} exit 0 with tracked frames, {len(bad)} failed")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
