"""Clocks for pacing and controller tests: a simulated one (make test) and the real one (`pytest -m timing`)."""

from __future__ import annotations

import time

import pytest


class SimClock:
    """Simulated seconds: `sleep` and `spin` advance it exactly; every read costs `tick` (as a real read does, so
    a loop spinning on the clock moves on)."""

    def __init__(self, tick: float = 1e-6) -> None:
        self.now = 0.0
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    spin = sleep  # simulated CPU work takes exactly its time

    def account(self, seconds: float) -> None:
        """Work that really ran (e.g. a model) is given `seconds` of simulated time."""
        self.now += seconds


class RealClock:
    """Wall-clock time: `spin` busy-waits (real CPU load)."""

    def __call__(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def spin(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    def account(self, seconds: float) -> None:
        """The work really ran and took its own time: nothing to add."""


# Parametrise a test over both: the simulated run is part of `make test`, the real-time run is `pytest -m timing`.
CLOCKS = pytest.mark.parametrize(
    "clock", [pytest.param(SimClock, id="simulated"), pytest.param(RealClock, id="real", marks=pytest.mark.timing)]
)
