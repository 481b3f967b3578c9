"""Per-frame accounting of the loop: latency by stage, and Python allocations over steady-state frames.

Both are safe with the sensor threads running: latency is a ring of numbers the loop writes, and allocations are
read from `sys.getallocatedblocks()` (a counter; no allocation hook is installed, unlike tracemalloc, whose
start/stop races with threads entering Python and can crash the process).
"""

from __future__ import annotations

import sys

import numpy as np

STAGES = ("input", "crop", "model", "decode", "overlay", "processing", "e2e")


class LatencyLog:
    """Seconds per stage for the last `capacity` tracked frames; the first frame (the init) is left out of stats."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.times = {k: np.zeros(capacity) for k in STAGES}
        self.n = 0

    def add(self, **seconds: float) -> None:
        i = self.n % len(self.times["e2e"])
        for key, value in seconds.items():
            self.times[key][i] = value
        self.n += 1

    def stats(self, stage: str) -> dict:
        n = min(self.n, len(self.times[stage]))
        a = self.times[stage][1:n] if n > 1 else self.times[stage][:n]
        if a.size == 0:
            return {"p50_ms": None, "p95_ms": None, "mean_ms": None}
        a = a * 1e3
        return {
            "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p95_ms": round(float(np.percentile(a, 95)), 3),
            "mean_ms": round(float(a.mean()), 3),
        }


class AllocationProbe:
    """Net Python memory blocks per frame between tracked frames `first` and `last` (steady state)."""

    def __init__(self, first: int = 20, last: int = 60) -> None:
        self.first, self.last = first, last
        self._start: int | None = None
        self.result: dict | None = None

    def frame(self, n: int) -> None:
        """Call once per tracked frame with its count so far (0 for the first)."""
        if n == self.first:
            self._start = sys.getallocatedblocks()
        elif n == self.last and self._start is not None:
            frames = self.last - self.first
            self.result = {
                "frames": frames,
                "net_blocks_per_frame": round((sys.getallocatedblocks() - self._start) / frames, 2),
                "measure": "sys.getallocatedblocks() difference (all threads)",
            }
