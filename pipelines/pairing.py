"""Pair RGB and thermal frames (plain Python, no GStreamer).

Live (`Pairer`): frames arrive per sensor with a timestamp in seconds on the shared pipeline clock. `pop()`
returns the newest pair whose timestamps differ by at most `tolerance` (default: half the slower sensor's frame
period); every frame older than that pair is dropped, and so is any frame that can no longer find a partner.
Each frame is used at most once, so latency never grows with a backlog.

Replay (`Lockstep`): both sensors' frames in order, each paired with the other sensor's frame of the same index
(image frames) or within `tolerance` of its timestamp (videos); a frame that has no partner comes out alone,
so every frame is either paired or accounted for.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

ROLES = ("rgb", "tir")


def default_tolerance(fps_rgb: float, fps_tir: float) -> float:
    """Half the frame period of the slower sensor, in seconds."""
    return 0.5 / min(fps_rgb, fps_tir)


@dataclass
class PairStats:
    pairs: int = 0
    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))  # stale or unpaired
    out_of_order: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))

    def as_dict(self) -> dict:
        return {
            "pairs": self.pairs,
            "received": dict(self.received),
            "dropped": dict(self.dropped),
            "out_of_order": dict(self.out_of_order),
        }


class Pairer:
    """Nearest-timestamp pairing of two streams with a small bounded history per sensor."""

    def __init__(self, tolerance: float, depth: int = 4):
        if tolerance <= 0:
            raise ValueError("pairing tolerance must be positive")
        self.tolerance = tolerance
        self.depth = depth
        self.queues: dict[str, deque[tuple[float, Any]]] = {r: deque() for r in ROLES}
        self.stats = PairStats()

    def push(self, role: str, timestamp: float, item: Any = None) -> None:
        """Add a frame; frames older than the newest one already queued for that sensor are dropped."""
        q = self.queues[role]
        self.stats.received[role] += 1
        if q and timestamp <= q[-1][0]:
            self.stats.out_of_order[role] += 1
            self.stats.dropped[role] += 1
            return
        q.append((timestamp, item))
        while len(q) > self.depth:
            q.popleft()
            self.stats.dropped[role] += 1

    def pop(self) -> tuple[tuple[float, Any], tuple[float, Any]] | None:
        """The newest pair within tolerance as ((t_rgb, rgb), (t_tir, tir)), or None; drops stale frames."""
        a, b = self.queues["rgb"], self.queues["tir"]
        best: tuple[int, int] | None = None
        for i in range(len(a) - 1, -1, -1):
            ta = a[i][0]
            j = min(range(len(b)), key=lambda k: abs(b[k][0] - ta), default=None)
            if j is not None and abs(b[j][0] - ta) <= self.tolerance:
                if best is None or min(ta, b[j][0]) > min(a[best[0]][0], b[best[1]][0]):
                    best = (i, j)
        if best is None:
            self._drop_hopeless()
            return None
        i, j = best
        self._drop_front("rgb", i)
        self._drop_front("tir", j)
        self.stats.pairs += 1
        return a.popleft(), b.popleft()

    def _drop_front(self, role: str, n: int) -> None:
        q = self.queues[role]
        for _ in range(n):
            q.popleft()
            self.stats.dropped[role] += 1

    def _drop_hopeless(self) -> None:
        """Drop frames that no present or future frame of the other sensor can match."""
        for role, other in (("rgb", "tir"), ("tir", "rgb")):
            q, o = self.queues[role], self.queues[other]
            if not o:
                continue
            newest_other = o[-1][0]
            while q and q[0][0] < newest_other - self.tolerance:
                q.popleft()
                self.stats.dropped[role] += 1

    def flush(self) -> None:
        """Forget queued frames (counted as dropped), e.g. when a sensor has gone away."""
        for role in ROLES:
            self._drop_front(role, len(self.queues[role]))


class Lockstep:
    """In-order pairing of two recorded streams by frame index (`tolerance=None`) or by timestamp.

    `push(role, key, item)` adds a stream's next frame (keys increase), `end(role)` marks a stream finished.
    `pop()` returns `("pair", rgb_item, tir_item)`, `("alone", role, item)` for a frame the other stream has no
    partner for (its partner is missing, or the other stream is past it or over), or None until more is known.
    """

    def __init__(self, tolerance: float | None = None) -> None:
        self.tolerance = tolerance
        self.queues: dict[str, deque[tuple[float, Any]]] = {r: deque() for r in ROLES}
        self.ended: dict[str, bool] = dict.fromkeys(ROLES, False)
        self.pairs = 0
        self.alone: dict[str, int] = dict.fromkeys(ROLES, 0)

    def push(self, role: str, key: float, item: Any) -> None:
        self.queues[role].append((key, item))

    def end(self, role: str) -> None:
        self.ended[role] = True

    def needs(self, role: str) -> bool:
        """Whether `pop()` waits for another frame of `role`."""
        return not self.queues[role] and not self.ended[role]

    @property
    def done(self) -> bool:
        return all(self.ended.values()) and not any(self.queues.values())

    def _match(self, a: float, b: float) -> bool:
        return a == b if self.tolerance is None else abs(a - b) <= self.tolerance

    def pop(self) -> tuple[str, Any, Any] | None:
        a, b = self.queues["rgb"], self.queues["tir"]
        if a and b:
            if self._match(a[0][0], b[0][0]):
                self.pairs += 1
                return "pair", a.popleft()[1], b.popleft()[1]
            role = "rgb" if a[0][0] < b[0][0] else "tir"
        elif a and self.ended["tir"]:
            role = "rgb"
        elif b and self.ended["rgb"]:
            role = "tir"
        else:
            return None
        self.alone[role] += 1
        return "alone", role, self.queues[role].popleft()[1]
