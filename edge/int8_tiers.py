"""The fastest precision tier that passes the fidelity gate: quantize with each tier, fastest first, gate it, keep
the first whose every rung passes (`ckd quantize --tier auto --gate`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from calibration.sources import Clip
from edge.int8 import fidelity, quantize_export
from edge.manifest import Manifest
from quantize.fidelity import RungFidelity, Thresholds
from quantize.policy import FASTEST_FIRST, tier


@dataclass
class TierSearch:
    """What `quantize_gated` did: the manifest and gate results of the tier left in the output folder, and one line
    per tier tried (`tried`: {"tier", "passed", "failures"})."""

    manifest: Manifest
    results: list[RungFidelity]
    tried: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(not r.failures for r in self.results)


def tiers_to_try(name: str) -> tuple[str, ...]:
    """`auto` -> every tier, fastest first; a tier name -> that tier alone."""
    return FASTEST_FIRST if name == "auto" else (tier(name).name,)


def quantize_gated(
    onnx_dir: str | Path,
    calib_dir: str | Path,
    out_dir: str | Path,
    clips: Sequence[Clip],
    limits: Thresholds,
    tiers: Sequence[str] = FASTEST_FIRST,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    **quantize_args,
) -> TierSearch:
    """Quantize `onnx_dir` into `out_dir` with each of `tiers` in turn and gate it against FP32 over `clips`; stop at
    the first tier whose rungs all pass. When none passes, `out_dir` holds the last tier tried (check `.passed`)."""
    search = None
    for name in tiers:
        manifest = quantize_export(onnx_dir, calib_dir, out_dir, tier=name, progress=True, **quantize_args)
        results = fidelity(onnx_dir, out_dir, clips, limits, threads=threads, progress=True)
        failures = [f"k={r.keep_ratio:.2f}: {'; '.join(r.failures)}" for r in results if r.failures]
        if search is None:
            search = TierSearch(manifest, results)
        search.manifest, search.results = manifest, results
        search.tried.append({"tier": name, "passed": not failures, "failures": failures})
        log(f"tier {name} ({tier(name).summary}): " + ("passed the gate" if not failures else "; ".join(failures)))
        if not failures:
            break
    if search is None:
        raise ValueError("no tier to try")
    return search
