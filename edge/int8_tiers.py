"""The fastest precision tier that passes the fidelity gate (`ckd quantize --tier auto --gate`): quantize with every
tier, time them on this CPU (interleaved, median), then gate them fastest first and keep the first whose every rung
passes. Which tier is fastest depends on the model: INT8 attention pays for its Q/DQ nodes only on large ones.
Every tier is written with a pending gate record (`quantize_export(gate=True)`), so nothing accepts a folder whose
gate did not finish; the winner gets its verdict (`record_gate`) before it moves into the output folder."""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration.sources import Clip
from edge.int8 import fidelity, quantize_export, record_gate
from edge.manifest import MANIFEST_NAME, Manifest
from edge.trt.targets import drop_stale_subexports
from quantize.fidelity import RungFidelity, Thresholds
from quantize.policy import TIER_NAMES, tier

Timer = Callable[[str, Callable[[], None]], float]


def wall_time(_name: str, run: Callable[[], None]) -> float:
    """Seconds one call of `run` takes (the default `Timer`; tests inject their own)."""
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


@dataclass
class TierSearch:
    """What `quantize_gated` did: the manifest and gate results of the tier left in the output folder, and one entry
    per tier tried, in the order tried (`tried`: {"tier", "model_ms", "passed", "failures"})."""

    manifest: Manifest
    results: list[RungFidelity]
    tried: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(not r.failures for r in self.results)


def tiers_to_try(name: str) -> tuple[str, ...]:
    """`auto` -> every tier; a tier name -> that tier alone."""
    return TIER_NAMES if name == "auto" else (tier(name).name,)


def model_ms(
    dirs: dict[str, Path | Manifest], threads: int | None = None, runs: int = 9, timer: Timer = wall_time
) -> dict[str, float]:
    """Median model time (ms, all rungs of a folder run once per round) of each INT8 folder (or manifest, e.g. a
    pending one), interleaved round by round so that load on a shared machine slows every folder alike; one untimed
    warm-up round."""
    from edge.backends.onnxruntime import OrtBackend

    backends = {name: OrtBackend(d, threads, precision="int8") for name, d in dirs.items()}
    rng = np.random.default_rng(0)
    for b in backends.values():
        for buf in b.input_buffers().values():
            buf[...] = rng.standard_normal(buf.shape, dtype=np.float32)

    def one_round(b) -> Callable[[], None]:
        return lambda: [b.run(b.input_buffers(), k) for k in b.keep_ratios]

    times: dict[str, list[float]] = {name: [] for name in dirs}
    for i in range(runs + 1):
        for name, b in backends.items():
            seconds = timer(name, one_round(b))
            if i:
                times[name].append(seconds)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _move_into(src: Path, dst: Path) -> None:
    """Move an INT8 folder's files (and `trt*/` sub-exports) into `dst`, the manifest last."""
    (dst / MANIFEST_NAME).unlink(missing_ok=True)
    for f in sorted(src.iterdir(), key=lambda p: p.name == MANIFEST_NAME):
        if (dst / f.name).is_dir() and not (dst / f.name).is_symlink():
            shutil.rmtree(dst / f.name)
        f.replace(dst / f.name)


def quantize_gated(
    onnx_dir: str | Path,
    calib_dir: str | Path,
    out_dir: str | Path,
    clips: Sequence[Clip],
    limits: Thresholds,
    tiers: Sequence[str] = TIER_NAMES,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    timer: Timer = wall_time,
    report: str | Path | None = None,
    reset_on_failure: bool = True,
    **quantize_args,
) -> TierSearch:
    """Quantize `onnx_dir` with each of `tiers`, rank them by measured model time, gate them against FP32 over `clips`
    fastest first and stop at the first whose rungs all pass. `out_dir` then holds that tier with its gate verdict
    (`report` names the gate report in it), or, when none passes, the slowest one tried with every failed rung
    removed (check `.passed`). The output folder holds no manifest while the search runs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # an older verdict must not outlive an interrupted search
    drop_stale_subexports(out_dir)  # nor an older trt*/ sub-export the new tier may not have (`--format ort`)
    work = out_dir / ".tiers"
    shutil.rmtree(work, ignore_errors=True)
    pending: dict[str, Manifest] = {}
    for name in tiers:
        pending[name] = quantize_export(
            onnx_dir, calib_dir, work / name, tier=name, gate=True, progress=True, **quantize_args
        )
    ms: dict[str, float | None] = dict.fromkeys(pending)
    order = list(pending)
    if len(pending) > 1:
        ms.update(model_ms(dict(pending), threads, timer=timer))
        order.sort(key=lambda n: ms[n])
        log("model time per tier (all rungs, median): " + ", ".join(f"{n} {ms[n]:.1f} ms" for n in order))
    tried: list[dict] = []
    for name in order:
        results = fidelity(
            onnx_dir, pending[name], clips, limits, threads=threads, progress=True, reset_on_failure=reset_on_failure
        )
        failures = [f"k={r.keep_ratio:.2f}: {'; '.join(r.failures)}" for r in results if r.failures]
        tried.append({"tier": name, "model_ms": ms[name], "passed": not failures, "failures": failures})
        log(f"tier {name} ({tier(name).summary}): " + ("passed the gate" if not failures else "; ".join(failures)))
        if not failures:
            break
    if not tried:
        raise ValueError("no tier to try")
    gated = record_gate(pending[name], results, limits, report)
    _move_into(work / name, out_dir)
    shutil.rmtree(work)
    return TierSearch(dataclasses.replace(gated, directory=out_dir), results, tried)
