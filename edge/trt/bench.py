"""On-device TensorRT benchmark: the tracker on a synthetic clip per rung, end-to-end and GPU-only latency,
FPS and power, with the conditions (nvpmodel mode, clock lock, JetPack, TensorRT) recorded beside them.

`bench_tensorrt` is what `ckd bench --backend tensorrt` calls; `summarize_rung`, `markdown` and `write_reports`
are plain functions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ckd.atomic import write_text_atomic


def latency_stats(values_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean of per-frame times (ms)."""
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        return dict.fromkeys(("p50", "p95", "p99", "mean"), float("nan"))
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(v.mean())}


def summarize_rung(
    keep_ratio: float, precision: str, e2e_ms: list[float], gpu_ms: list[float], power: dict | None
) -> dict:
    """One report row: latency percentiles end to end and GPU-only, FPS from the mean end-to-end time, power."""
    e2e = latency_stats(e2e_ms)
    row = {
        "keep_ratio": keep_ratio,
        "precision": precision,
        "frames": len(e2e_ms),
        "e2e_ms": e2e,
        "gpu_ms": latency_stats(gpu_ms),
        "fps": 1000.0 / e2e["mean"] if e2e["mean"] > 0 else float("nan"),
        "power_w": power["total_mw_mean"] / 1000.0 if power else None,
        "power": power,
    }
    row["frames_per_joule"] = row["fps"] / row["power_w"] if row["power_w"] else None
    return row


def _fmt(v, spec: str = "{:.2f}") -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else spec.format(v)


def markdown(doc: dict) -> str:
    """The report as Markdown: conditions first, then one row per rung."""
    cond = doc["conditions"]
    mode = (cond.get("nvpmodel") or {}).get("mode", "unknown")
    clocks = cond.get("clocks")
    locked = (
        "unknown" if clocks is None else ("locked" if clocks["locked"] else "not locked (run `sudo jetson_clocks`)")
    )
    lines = [
        f"# TensorRT benchmark on {cond['device']}",
        "",
        f"JetPack {cond.get('jetpack') or '–'}, TensorRT {cond['tensorrt']}, nvpmodel {mode}, clocks {locked}, "
        f"CUDA graphs {'on' if cond['cuda_graphs'] else 'off'}, zero-copy {'on' if cond['zero_copy'] else 'off'}; "
        f"{cond['frames']} timed frames after {cond['warmup']} warm-up frames per rung.",
        "",
        "| keep ratio | precision | e2e p50 | e2e p95 | e2e p99 | GPU p50 | GPU p95 | GPU p99 "
        "| FPS | power W | frames/J |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        e, g = r["e2e_ms"], r["gpu_ms"]
        cells = [f"{r['keep_ratio']:.2f}", r["precision"], *(_fmt(e[k]) for k in ("p50", "p95", "p99"))]
        cells += [*(_fmt(g[k]) for k in ("p50", "p95", "p99")), _fmt(r["fps"], "{:.1f}")]
        cells += [_fmt(r["power_w"]), _fmt(r["frames_per_joule"], "{:.1f}")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Latencies in ms. e2e = the tracker's whole update (crop, normalise, engine, decode)."]
    return "\n".join(lines) + "\n"


def write_reports(doc: dict, json_path: str | Path | None, md_path: str | Path | None) -> None:
    if json_path:
        write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    if md_path:
        write_text_atomic(md_path, markdown(doc))


def bench_tensorrt(
    export_dir: str | Path,
    *,
    frames: int = 300,
    warmup: int = 30,
    keep_ratios: list[float] | None = None,
    cuda_graphs: bool = False,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> dict:
    """Track a synthetic clip with the engines `ckd build` selected; one row per rung (needs a GPU)."""
    from tqdm import tqdm

    from ckd.data.synthetic import synthetic_clip
    from ckd.track.tracker import Tracker
    from edge import devices
    from edge.backends.tensorrt import TensorRTBackend
    from edge.trt.flags import import_tensorrt
    from edge.trt.tegra import TegraStats, power_state

    device = devices.detect()
    backend = TensorRTBackend.from_export(export_dir, device, cache_dir, cuda_graphs=cuda_graphs)
    synth = synthetic_clip(seed, frames + warmup + 1, 640, 480)
    clip = [synth.load(i) for i in range(len(synth))]  # in memory; thermal by the kit's one mapping
    state = power_state()
    rows = []
    try:
        for ratio in tqdm(keep_ratios or backend.keep_ratios, desc="rungs", unit="rung"):
            tracker = Tracker(backend)
            tracker.init(*clip[0], synth.init_box)
            for rgb, tir in clip[1 : warmup + 1]:
                tracker.update(rgb, tir, keep_ratio=ratio)
            e2e, gpu = [], []
            with TegraStats() as stats:
                for rgb, tir in clip[warmup + 1 :]:
                    t0 = time.perf_counter()
                    tracker.update(rgb, tir, keep_ratio=ratio)
                    e2e.append((time.perf_counter() - t0) * 1000.0)
                    gpu.append(backend.last_gpu_ms)
            rung = backend.rung_for(ratio)
            rows.append(summarize_rung(rung, backend.precisions.get(rung, "?"), e2e, gpu, stats.summary()))
    finally:
        backend.close()
    conditions = {
        "device": device.name,
        "jetpack": device.jetpack.jetpack if device.jetpack else None,
        "l4t": device.l4t,
        "tensorrt": import_tensorrt().__version__,
        "nvpmodel": state["nvpmodel"],
        "clocks": state["clocks"],
        "cuda_graphs": cuda_graphs,
        "zero_copy": backend.zero_copy,
        "frames": frames,
        "warmup": warmup,
        "seed": seed,
    }
    return {"conditions": conditions, "rows": rows}
