"""Bench outputs: ratios against a baseline of the same run, roofline fractions, JSON, Markdown and a PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ckd.atomic import atomic_path, write_text_atomic

CEILING_KEY = {"fp32": "fp32_gops", "int8": "int8_gops"}


def baseline_index(rows: list[dict], model: str) -> int | None:
    """The row a model is compared against: its torch FP32 row at the highest keep ratio, else its first row."""
    mine = [i for i, r in enumerate(rows) if r["model"] == model]
    torch_rows = [i for i in mine if r_is(rows[i], "torch", "fp32")]
    pool = torch_rows or mine
    return max(pool, key=lambda i: rows[i]["keep_ratio"] or 0.0) if pool else None


def r_is(row: dict, backend: str, precision: str) -> bool:
    return row["backend"] == backend and row["precision"] == precision


def add_ratios(rows: list[dict]) -> None:
    """`speedup` = baseline p50 / this p50 (end to end) and `model_speedup` (model only), per model.

    The peer (no keep ratio) is compared against the first model's baseline.
    """
    first_model = next((r["model"] for r in rows if r["keep_ratio"] is not None), None)
    for row in rows:
        ref = baseline_index(rows, row["model"] if row["keep_ratio"] is not None else first_model)
        if ref is None:
            continue
        base = rows[ref]
        row["baseline"] = f"{base['model']} {base['backend']} {base['precision']} k{base['keep_ratio']:.2f}"
        row["speedup"] = base["p50_ms"] / row["p50_ms"]
        if "model_p50_ms" in row and "model_p50_ms" in base:
            row["model_speedup"] = base["model_p50_ms"] / row["model_p50_ms"]


def add_roofline(rows: list[dict], ceilings: dict[str, float]) -> None:
    """Achieved GEMM rate of the model step (`gemm_gops` / model p50) as a fraction of the measured ceiling.

    `ceiling_fraction` divides by the probe taken right before/after the row (best of the two): on a shared
    machine that probe saw the same contention as the row. `ceiling_fraction_best` divides by the best probe of
    the whole run, the machine's ceiling when it was quietest.
    """
    for row in rows:
        if "gemm_gops" not in row or not row.get("model_p50_ms"):
            continue
        row["achieved_gops"] = row["gemm_gops"] / (row["model_p50_ms"] / 1e3)
        best = ceilings.get(CEILING_KEY.get(row["precision"], ""))
        near = row.get("ceiling_gops_adjacent")
        row["ceiling_fraction"] = row["achieved_gops"] / near if near else None
        row["ceiling_fraction_best"] = row["achieved_gops"] / best if best else None


def _clean(obj):
    """JSON-safe: NaN/inf become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: str | Path, doc: dict) -> None:
    write_text_atomic(path, json.dumps(_clean(doc), indent=2) + "\n")


def _f(v, fmt: str = "{:.1f}") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "–"


def markdown(doc: dict) -> str:
    """A table per run: one line per configuration, with the conditions and notes under it."""
    env, ceil = doc["environment"], doc.get("roofline", {})
    lines = [
        "| model | backend | prec | keep | GMACs | pre p50 | model p50 / p95 / p99 | end-to-end p50 / p95 / p99 | FPS "
        "| x baseline | % GEMM ceiling | peak RSS MB | AUC | P@20 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        keep = "–" if r["keep_ratio"] is None else f"{r['keep_ratio']:.2f}"
        model = " / ".join(_f(r.get(f"model_{q}_ms")) for q in ("p50", "p95", "p99"))
        e2e = " / ".join(_f(r[f"{q}_ms"]) for q in ("p50", "p95", "p99"))
        frac = r.get("ceiling_fraction")
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['precision']} | {keep} | {_f(r.get('gmacs_thop'), '{:.2f}')} "
            f"| {_f(r.get('preprocess_p50_ms'))} | {model} | {e2e} | {_f(r['fps'])} "
            f"| {_f(r.get('speedup'), '{:.2f}x')} | {_f(None if frac is None else 100 * frac)} "
            f"| {_f(r['peak_rss_mb'], '{:.0f}')} | {_f(r.get('success_auc'), '{:.3f}')} "
            f"| {_f(r.get('precision_20px'), '{:.3f}')} |"
        )
    cpu, thr, libs = env["cpu"], env["threads"], env["libraries"]
    lib_text = ", ".join(f"{k} {v}" for k, v in libs.items() if v)
    lines += [
        "",
        f"Times in ms per frame, batch 1, one stream, {doc['clip']['frames']} timed frames of `{doc['clip']['name']}` "
        f"after {doc['warmup']} warm-up updates. *x baseline* = baseline p50 / row p50 (end to end), baseline = "
        "each model's torch FP32 row at its highest keep ratio, measured in this run (the peer: the first model's). "
        "GMACs: thop convention (as published). *% GEMM ceiling* = (GEMM ops incl. attention / model p50) / the "
        "GEMM rate of the row's precision, probed right before and after the row (best of the two; the same "
        "contention as the row). Peak RSS: whole bench process during that configuration.",
        "",
        f"- CPU: {cpu['model']} ({cpu['machine']}), {cpu['usable_cores']} usable of {cpu['logical_cores']} logical "
        f"cores, flags {' '.join(cpu['flags']) or '–'}",
        f"- threads: requested {thr['requested']}, torch intra-op {thr['torch_intra_op']}, inter-op "
        f"{thr['torch_inter_op']}; load average (1/5/15 min) before {_load(env.get('load_average_before'))}, "
        f"after {_load(env.get('load_average_after'))}",
        f"- GEMM ceiling (best of probes before and after the rows, M,K,N = {ceil['shape_mkn']}): FP32 "
        f"{_f(ceil['fp32_gops'])} GFLOP/s, INT8 {_f(ceil['int8_gops'])} GOP/s"
        if "shape_mkn" in ceil
        else "- GEMM ceiling: not measured (--roofline-seconds 0)",
        f"- libraries: {lib_text}",
    ]
    for name, sha in env.get("models", {}).items():
        lines.append(f"- model `{name}`: sha256 {sha[:16]}…")
    if env.get("jetson"):
        lines.append(f"- Jetson: {env['jetson']}")
    lines += [f"- note: {n}" for n in doc.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: str | Path) -> None:
    """Latency (end-to-end p50) against success AUC, one point per row, labelled."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    markers = {"torch": "o", "onnxruntime": "s", "tensorrt": "D", "opencv": "*"}
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(r["model"] for r in doc["rows"]))}
    crowd: dict[float, int] = {}  # labels of points at the same accuracy are stacked, not drawn over each other
    for r in doc["rows"]:
        auc = r.get("success_auc")
        if auc is None or not math.isfinite(auc):
            continue
        keep = "" if r["keep_ratio"] is None else f" k{r['keep_ratio']:.2f}"
        ax.scatter(r["p50_ms"], auc, marker=markers.get(r["backend"], "o"), color=colours[r["model"]], s=60)
        k = crowd.get(round(auc, 3), 0)
        crowd[round(auc, 3)] = k + 1
        ax.annotate(
            f"{r['model']} {r['backend']} {r['precision']}{keep}",
            (r["p50_ms"], auc),
            fontsize=7,
            xytext=(4, 4 + 9 * k),
            textcoords="offset points",
            arrowprops={"arrowstyle": "-", "lw": 0.4, "alpha": 0.5} if k else None,
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("end-to-end latency p50 (ms, log)")
    ax.set_ylabel(f"success AUC on {doc['clip']['name']}")
    ax.set_title(f"latency vs accuracy — {doc['environment']['cpu']['model']}", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
        tmp.chmod(0o644)
    plt.close(fig)
