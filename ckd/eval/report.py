"""Evaluation output: JSON object, text table, and precision/success curves in one PNG."""

from __future__ import annotations

from pathlib import Path

from ckd.atomic import atomic_path
from ckd.eval.evaluate import Evaluation, TrackerScores
from ckd.eval.protocols import Scores


def _values(scores: Scores) -> dict[str, float | int]:
    return {**{k: round(v, 6) for k, v in scores.values.items()}, "sequences": scores.sequences}


def as_json(ev: Evaluation, attributes: bool = False) -> dict:
    """`{"<tracker>": {"PR": 0.608, ..., "sequences": 245}}`, values as fractions; attribute scores on request."""
    out = {}
    for t in ev.trackers:
        entry = _values(t.overall)
        if attributes and t.by_attribute:
            entry["attributes"] = {a: _values(s) for a, s in t.by_attribute.items()}
        out[t.name] = entry
    return out


def _rows(keys: list[str], named: list[tuple[str, Scores]]) -> list[str]:
    width = max([len("Tracker"), *(len(n) for n, _ in named)])
    lines = ["  ".join([f"{'Tracker':<{width}}", *(f"{k:>6}" for k in keys), f"{'seqs':>5}"])]
    for name, s in named:
        cells = [f"{100 * s.values[k]:6.1f}" for k in keys]
        lines.append("  ".join([f"{name:<{width}}", *cells, f"{s.sequences:5d}"]))
    return lines


def as_table(ev: Evaluation, attributes: bool = False) -> str:
    """Scores in percent, one row per tracker in the given order; per-attribute blocks on request."""
    keys = [c.key for c in ev.protocol.curves]
    lines = [f"{ev.protocol.name} ({', '.join(keys)} in %)", *_rows(keys, [(t.name, t.overall) for t in ev.trackers])]
    if attributes:
        attrs = sorted({a for t in ev.trackers for a in t.by_attribute})
        for a in attrs:
            lines += ["", f"[{a}]", *_rows(keys, [(t.name, t.by_attribute[a]) for t in ev.trackers])]
    return "\n".join(lines)


def _ranked(trackers: list[TrackerScores], key: str) -> list[TrackerScores]:
    return sorted(trackers, key=lambda t: t.overall.values[key], reverse=True)


def save_plot(ev: Evaluation, out: str | Path) -> Path:
    """One panel per curve (precision, normalised precision, success); legends ordered by score like the papers."""
    from matplotlib.figure import Figure

    out = Path(out)
    curves = ev.protocol.curves
    fig = Figure(figsize=(5.2 * len(curves), 4.6), layout="constrained")
    for ax, curve in zip(fig.subplots(1, len(curves), squeeze=False)[0], curves, strict=True):
        for t in _ranked(ev.trackers, curve.key):
            ax.plot(
                curve.thresholds,
                t.overall.curves[curve.key],
                lw=2,
                label=f"{t.name} [{t.overall.values[curve.key]:.3f}]",
            )
        kind = "Success" if curve.at is None else "Normalized precision" if curve.key == "NPR" else "Precision"
        ax.set_title(f"{curve.key} - {kind} plot ({ev.protocol.name})")
        ax.set_xlabel(curve.xlabel)
        ax.set_ylabel(f"{kind} rate")
        ax.set_xlim(curve.thresholds[0], curve.thresholds[-1])
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left" if curve.at is None else "lower right", fontsize=8)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    return out
