"""Frame pacing and rate measurement for a loop that must keep up with a real-time source."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator

from ckd.errors import CKDError


class FramePacer:
    """Hands out frame slots on a fixed schedule, as a live camera at `fps` would deliver frames.

    `wait()` sleeps until the next slot and returns how late the loop picks that frame up (0 when on time). The
    schedule is absolute, so sleep jitter does not accumulate. When the loop falls more than `max_behind` frames
    behind, the backlog is dropped (like a leaky queue) and counted in `dropped`. `clock` and `sleep` can be
    replaced by a simulated clock (tests).
    """

    def __init__(
        self,
        fps: float,
        *,
        max_behind: int = 30,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        spin_s: float = 5e-4,
    ) -> None:
        if not (fps > 0 and math.isfinite(fps)):
            raise CKDError(f"pacing fps must be a positive number, got {fps}")
        self.period = 1.0 / fps
        self.max_behind = max_behind
        self.clock = clock
        self.sleep = sleep
        self.spin_s = spin_s
        self.dropped = 0
        self.frames = 0
        self._due: float | None = None

    def wait(self) -> float:
        """Block until the next frame is due; return its lateness in seconds."""
        now = self.clock()
        if self._due is None:
            self._due = now
        late = now - self._due
        if late > self.max_behind * self.period:
            missed = math.floor(late / self.period + 1e-6)  # hand out the newest frame, drop the ones before
            self.dropped += missed
            self._due += missed * self.period
            late = now - self._due
        while late < 0:  # sleep most of the gap, spin the last fraction of a millisecond
            if -late > self.spin_s:
                self.sleep(-late - self.spin_s)
            now = self.clock()
            late = now - self._due
        self._due += self.period
        self.frames += 1
        return late

    def slots(self, seconds: float) -> Iterator[float]:
        """Wait for each frame slot of the next `seconds`; yield its actual start (seconds since the first slot)."""
        first: float | None = None
        while True:
            late = self.wait()
            due = self._due - self.period  # the slot just handed out
            first = due if first is None else first
            if due - first >= seconds - 1e-9:
                return
            yield due + late - first


class RateMeter:
    """Frames per second over a sliding time window."""

    def __init__(self, window_s: float = 2.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.window_s = window_s
        self.clock = clock
        self._stamps: deque[float] = deque()

    def tick(self, t: float | None = None) -> None:
        """Record one frame at time `t` (now by default)."""
        t = self.clock() if t is None else t
        self._stamps.append(t)
        while self._stamps and t - self._stamps[0] > self.window_s:
            self._stamps.popleft()

    @property
    def fps(self) -> float:
        """Frames per second over the window (0 until two frames are seen)."""
        if len(self._stamps) < 2:
            return 0.0
        span = self._stamps[-1] - self._stamps[0]
        return (len(self._stamps) - 1) / span if span > 0 else 0.0
