"""The run report (`latency.json`) and the one-line summary `ckd run` prints."""

from __future__ import annotations

from collections import Counter

from pipelines.accounting import STAGES, LatencyLog


def source_report(src) -> dict:
    """What one sensor delivered, and what it could not (frames by reason) or why it stopped."""
    return {
        "uri": src.spec.uri,
        "frames": src.frames,
        "unreadable": dict(Counter(p.reason for p in src.problems)),
        "error": src.error,
        "eos": src.eos,
        "restarts": src.restarts,
        "timestamp_jumps": src.timestamp_jumps,
    }


def run_report(
    *,
    mode: str,
    counts: dict,
    feed: dict,
    latency: LatencyLog,
    sources: list,
    copies: dict,
    allocations: dict | None,
    escaped_views: int,
    thermal: str | None,
    events: list[str],
    stopped_by: str | None,
    rows: dict,
    overlay: str | None,
    wall_s: float,
) -> dict:
    """The report of one run (see docs/pipelines.md for every field)."""
    model, proc, e2e = latency.stats("model"), latency.stats("processing"), latency.stats("e2e")
    ratio = round(e2e["p50_ms"] / model["p50_ms"], 2) if model["p50_ms"] else None
    tracked = counts["tracked"]
    dropped = feed.get("dropped", {})
    return {
        "mode": mode,
        "frames": {**feed, **counts},
        "frames_processed": tracked,
        "frames_skipped": counts["skipped"],
        "frames_dropped": sum(dropped.values()),
        "wall_s": round(wall_s, 3),
        "fps": round(tracked / wall_s, 2) if wall_s > 0 else None,
        "model": model,
        "stages_p50_ms": {k: latency.stats(k)["p50_ms"] for k in STAGES},
        "processing": proc,
        "end_to_end": e2e,
        "e2e_over_model_p50": ratio,
        "sources": {s.spec.role: source_report(s) for s in sources},
        "thermal": thermal,
        "zero_copy_input": bool(tracked) and copies.get("rgb_input", 1) == 0,
        "copies_per_frame": copies,
        "frame_views_outliving_release": escaped_views,
        "allocations": allocations,
        "events": list(events),
        "stopped_by": stopped_by,
        "interrupted": stopped_by is not None,
        **rows,
        "overlay": overlay,
    }


def summary_line(report: dict, out: str) -> str:
    """What `ckd run` prints at the end."""
    f, e2e, model = report["frames"], report["end_to_end"], report["model"]
    if report["mode"] == "replay":
        read = f"{f['read']['rgb']} RGB + {f['read']['tir']} thermal frames read, {f['paired']} paired"
        lost = f", {f['not_tracked']} not tracked (no pair)" if f["not_tracked"] else ""
        head = f"replay: {read}, {f['tracked']} tracked{lost}"
    else:
        head = (
            f"{f['tracked']} frames ({f['skipped']} skipped, {report['frames_dropped']} dropped in pairing) "
            f"at {report['fps']} fps"
        )
    return (
        f"{head}; end-to-end p50 {e2e['p50_ms']} ms vs model {model['p50_ms']} ms (x{report['e2e_over_model_p50']}); "
        f"outputs in {out}"
    )
