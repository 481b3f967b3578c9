"""Where the loop's frames come from: live sensors (newest pair) or a recorded clip (every frame, in lockstep).

Both feeds hand the loop `Job`s: a pair to track (in live mode one side may be missing while its sensor is lost:
the other sensor's frame stands in), or a source frame that will not be tracked and why. Both run a `GstRig`;
`LiveFeed` takes samples from GStreamer's streaming threads through a lock, `ReplayFeed` pulls them on the
calling thread.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from pipelines.pairing import ROLES, Lockstep, Pairer, default_tolerance
from pipelines.source import GstRig, Sample
from pipelines.uri import SourceSpec


@dataclass
class Job:
    """One source frame for the loop: track `rgb` + `tir` (`note` says which sensor is stood in for), or, with
    `skip`, account for a frame that has no pair (`quiet`: the reason was already reported as a bad file).
    `index` is the source frame index (None: not a row of its own)."""

    index: int | None
    rgb: Sample | None = None
    tir: Sample | None = None
    note: str = ""
    skip: str = ""
    quiet: bool = False


def _other(role: str) -> str:
    return "tir" if role == "rgb" else "rgb"


class LiveFeed:
    """Live sensors: the newest pair within `tolerance`; when one sensor is lost, the other's newest frame alone."""

    mode = "live"
    gap_reason = "dropped: not the newest pair when the loop was free (live)"

    def __init__(self, specs: list[SourceSpec], tolerance: float, stall_s: float, nvidia: bool | None = None):
        self.pairer = Pairer(tolerance, depth=2)  # held samples pin sensor buffers: keep few (v4l2 pools are small)
        self.stall_s = stall_s
        self._cond = threading.Condition()
        self._latest: dict[str, Sample | None] = dict.fromkeys(ROLES)
        self._used: dict[str, float] = dict.fromkeys(ROLES, -1.0)
        self.rig = GstRig(specs, self._on_sample, nvidia=nvidia)

    def _on_sample(self, sample: Sample) -> None:  # GStreamer streaming thread
        with self._cond:
            self.pairer.push(sample.role, sample.timestamp, sample)
            self._latest[sample.role] = sample
            self._cond.notify()

    def _lost(self) -> list[str]:
        return [s.spec.role for s in self.rig.sources if not s.alive or s.stalled]

    def next(self, wait_s: float = 0.05) -> Job | None:
        """The newest pair, or, when one sensor is lost, the other sensor's newest unused frame alone."""
        self.rig.poll(self.stall_s)
        with self._cond:
            pair = self.pairer.pop()
            if pair is None:
                self._cond.wait(wait_s)
                pair = self.pairer.pop()
            if pair is not None:
                (_, a), (_, b) = pair
                self._used["rgb"], self._used["tir"] = a.timestamp, b.timestamp
                return Job(a.index, a, b)
            lost = self._lost()
            if len(lost) == 1:
                alive = _other(lost[0])
                s = self._latest[alive]
                if s is not None and s.timestamp > self._used[alive]:
                    self.pairer.flush()
                    self._used[alive] = s.timestamp
                    job = Job(s.index, note=f"{lost[0]} lost")
                    setattr(job, alive, s)
                    return job
        return None

    def ended(self, idle: bool) -> bool:
        """Nothing is running and a sensor has ended for good (a reconnecting sensor is waited for)."""
        sources = self.rig.sources
        if not idle or any(s.alive for s in sources):
            return False
        return any(s.retry_at is None for s in sources)

    def stats(self) -> dict:
        st = self.pairer.stats
        return {
            "read": dict(st.received),
            "paired": st.pairs,
            "dropped": dict(st.dropped),
            "out_of_order": dict(st.out_of_order),
        }


class ReplayFeed:
    """A recorded clip: every frame of both sensors, paired by index (image frames) or timestamp (videos)."""

    mode = "replay"
    gap_reason = "no frame from either sensor"

    def __init__(self, specs: list[SourceSpec], tolerance: float | None = None, nvidia: bool | None = None):
        self.rig = GstRig(specs, None, nvidia=nvidia)
        self.by_index = all(s.provider is not None for s in self.rig.sources)
        self.tolerance = tolerance  # by timestamp: default half the slower stream's frame period (from its caps)
        self.lock = Lockstep(None if self.by_index else tolerance)
        self.read: dict[str, int] = dict.fromkeys(ROLES, 0)
        self.not_paired: dict[str, Counter] = {r: Counter() for r in ROLES}

    def next(self, wait_s: float = 0.05) -> Job | None:
        for src in self.rig.sources:
            role = src.spec.role
            if not self.lock.needs(role):
                continue
            sample = src.pull(wait_s / 2)
            if sample is not None:
                self.read[role] += 1
                self.lock.push(role, sample.index if self.by_index else sample.timestamp, sample)
            elif src.exhausted:
                self.lock.end(role)
        if not self.by_index and self.lock.tolerance is None:
            rates = [s.fps for s in self.rig.sources if s.fps is not None]
            if len(rates) < 2 and not any(self.lock.ended.values()):
                return None  # wait until both streams' frame rates are known from their first frames
            rates = rates or [30.0]
            self.tolerance = self.lock.tolerance = default_tolerance(min(rates), max(rates))
        got = self.lock.pop()
        if got is None:
            return None
        if got[0] == "pair":
            _, rgb, tir = got
            return Job(rgb.index, rgb, tir)
        _, role, sample = got
        why, kind, reported = self._why_alone(role, sample)
        self.not_paired[role][kind] += 1
        # a thermal video frame without an RGB partner is not a source frame of the clip's rows (RGB's are)
        index = sample.index if self.by_index or role == "rgb" else None
        job = Job(index, skip=why, quiet=reported)
        setattr(job, role, sample)  # for its timestamp; never mapped
        return job

    def _why_alone(self, role: str, sample: Sample) -> tuple[str, str, bool]:
        """(one line naming the frame and why it has no partner, a short class for the report, whether the cause
        is a bad file the source already reported)."""
        other, i = _other(role), sample.index
        src = self.rig.source(other)
        if not self.by_index:
            why = f"{role} frame {i} (t={sample.timestamp:.3f} s) not tracked: "
            return why + f"no {other} frame within {self.tolerance * 1e3:.0f} ms", f"no {other} frame in time", False
        why = f"{role} frame {i} not tracked: "
        problem = next((p for p in src.problems if p.index == i), None)
        if problem is not None:
            return why + str(problem), f"{other} frame {problem.reason}", True
        if i > src.provider.last:
            return why + f"the {other} clip ends at frame {src.provider.last}", f"{other} clip shorter", False
        if i < src.provider.first:
            return why + f"the {other} clip starts at frame {src.provider.first}", f"{other} clip later", False
        return why + f"no {other} frame {i}", f"no {other} frame", False

    def ended(self, idle: bool) -> bool:
        return self.lock.done

    def stats(self) -> dict:
        return {
            "read": dict(self.read),
            "paired": self.lock.pairs,
            "paired_by": "frame index" if self.by_index else f"timestamp (within {(self.tolerance or 0) * 1e3:.0f} ms)",
            "not_paired": {r: dict(c) for r, c in self.not_paired.items()},
        }
