"""Adaptive candidate-elimination controller: pick a keep-ratio rung per frame to hold a target frame rate.

The ladder of rungs runs richest (most search tokens kept, highest precision) to cheapest. After every frame the
loop reports its end-to-end latency and tracking score; the controller answers with the rung for the next frame
and whether to skip it.

- Latency is EMA-smoothed per rung. Each rung's cost relative to the others starts from a prior (token count x
  precision factor) and is re-learned from the latencies measured just before and after each rung change.
- Step down (possibly several rungs) when both the smoothed and the raw latency exceed budget*(1+margin_down)
  for `down_frames` processed frames. Step up one rung when the richer rung's predicted cost stays under
  budget*(1-margin_up) for `up_frames` frames; that dwell doubles each time a step up is undone soon after
  (back-off), and halves again when a step up holds.
- Score: a low smoothed score (uncertain target) steps up one rung as soon as it fits the budget at all; a high
  one (steady target) runs one rung cheaper than the budget affords. The score's mood is debounced (a band
  around each threshold, `score_frames` frames to change) so a score hovering at a threshold does not flap.
- Skips: when the loop is a whole frame behind the real-time schedule (the cheapest rung misses the budget, or
  one slow frame), the next frames are skipped until it has caught up, and the reason says so.

Every frame is logged (`log`, `write_log`).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ckd.atomic import write_text_atomic
from ckd.errors import CKDError
from ckd.model.config import CKDConfig

_LOG = logging.getLogger(__name__)

# Rough speed-up of a precision over fp32, used only as a prior until latencies are measured.
PRECISION_COST = {"fp32": 1.0, "tf32": 0.8, "fp16": 0.55, "bf16": 0.55, "int8": 0.35, "best": 0.35}


@dataclass(frozen=True)
class Rung:
    """One setting the backend can run: a candidate-elimination keep ratio and an engine precision."""

    keep_ratio: float
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_ratio <= 1.0:
            raise CKDError(f"rung keep ratio must be in (0, 1], got {self.keep_ratio}")

    def __str__(self) -> str:
        return f"{self.keep_ratio:g}/{self.precision}"


@dataclass(frozen=True)
class Decision:
    """What to do with the next frame: run it at `rung`, or skip it; `reason` explains the choice."""

    rung: Rung
    skip: bool
    reason: str


@dataclass(frozen=True)
class LogEntry:
    """One frame as the controller saw it, and the decision it made for the next frame."""

    frame: int
    ran: str  # rung the frame ran at, or "skip"
    latency_ms: float
    smoothed_ms: float
    score: float | None
    behind_ms: float
    next_rung: str
    skip_next: bool
    reason: str

    def as_row(self) -> dict[str, object]:
        return {k: ("" if v is None else round(v, 3) if isinstance(v, float) else v) for k, v in vars(self).items()}


def token_cost(rung: Rung, config: CKDConfig | None = None) -> float:
    """Prior relative cost of a rung: search + template tokens summed over the blocks, times a precision factor.

    Elimination is counted from its CE block on (the MLP, most of a block's cost, runs after it).
    """
    cfg = config or CKDConfig()
    kept = cfg.kept_tokens(rung.keep_ratio)
    total, stage = 0, -1
    for block in range(cfg.depth):
        while stage + 1 < len(cfg.ce_loc) and cfg.ce_loc[stage + 1] <= block:
            stage += 1
        total += cfg.num_template_tokens + (kept[stage] if stage >= 0 else cfg.num_search_tokens)
    return total * PRECISION_COST.get(rung.precision, 1.0)


def ladder(
    keep_ratios: Sequence[float], precisions: Sequence[str] = ("fp32",), config: CKDConfig | None = None
) -> list[Rung]:
    """All keep ratio x precision rungs, ordered richest (highest prior cost) to cheapest."""
    rungs = {Rung(float(r), p) for r in keep_ratios for p in precisions}
    if not rungs:
        raise CKDError("the rung ladder is empty: give at least one keep ratio")
    return sorted(rungs, key=lambda g: (-token_cost(g, config), -g.keep_ratio, g.precision))


class RungController:
    """Moves along a ladder of rungs to hold `target_fps`; call `update` once per frame (processed or skipped)."""

    def __init__(
        self,
        rungs: Sequence[Rung | float],
        target_fps: float,
        *,
        alpha: float = 0.2,
        margin_down: float = 0.05,
        margin_up: float = 0.15,
        down_frames: int = 3,
        up_frames: int = 15,
        score_low: float = 0.3,
        score_high: float = 0.6,
        score_alpha: float = 0.3,
        score_band: float = 0.1,
        score_frames: int = 8,
        cost_prior: Callable[[Rung], float] = token_cost,
        max_backoff: int = 16,
        log_size: int = 100_000,
    ) -> None:
        self.rungs = [r if isinstance(r, Rung) else Rung(float(r)) for r in rungs]
        if not self.rungs:
            raise CKDError("the rung ladder is empty: give at least one keep ratio")
        if len(set(self.rungs)) != len(self.rungs):
            raise CKDError(f"the rung ladder repeats a rung: {', '.join(map(str, self.rungs))}")
        if not (target_fps > 0 and math.isfinite(target_fps)):
            raise CKDError(f"target fps must be a positive number, got {target_fps}")
        if not 0.0 <= score_low <= score_high:
            raise CKDError(f"score thresholds need 0 <= low <= high, got low={score_low} high={score_high}")
        if down_frames < 1 or up_frames < 1:
            raise CKDError("down_frames and up_frames must be at least 1")
        self.target_fps = float(target_fps)
        self.budget_s = 1.0 / self.target_fps
        self.alpha, self.score_alpha = alpha, score_alpha
        self.margin_down, self.margin_up = margin_down, margin_up
        self.down_frames, self.up_frames = down_frames, up_frames
        self.score_low, self.score_high, self.score_band = score_low, score_high, score_band
        self.score_frames = score_frames
        self._mood_now = self._mood_seen = "neutral"  # acted-on mood; mood of the latest frames
        self._mood_count = 0
        self.max_backoff = max_backoff
        prior = [float(cost_prior(r)) for r in self.rungs]
        if min(prior) <= 0:
            raise CKDError("the rung cost prior must be positive for every rung")
        self._rel = [p / prior[0] for p in prior]  # relative cost, learned online
        self._backoff = [1] * len(self.rungs)  # up-dwell multiplier for stepping up INTO each rung
        self.log: deque[LogEntry] = deque(maxlen=log_size)
        self.frames = 0
        self.skipped = 0
        self.changes = 0
        self._idx = 0
        self._smoothed: float | None = None
        self._score: float | None = None
        self._behind = 0.0
        self._over = self._fit = self._nofit = self._at_rung = 0
        self._recent: deque[float] = deque(maxlen=down_frames)  # raw latencies at this rung, newest last
        self._switch: tuple[int, float] | None = None  # (rung we came from, its smoothed latency) until learned
        self._up_probe: int | None = None  # rung we last stepped up into, until that step is confirmed
        self._decision = Decision(self.rungs[0], False, "start at the richest rung")

    # -- state -------------------------------------------------------------------------------------------------

    @property
    def rung(self) -> Rung:
        """The rung the next frame runs at."""
        return self.rungs[self._idx]

    @property
    def rung_index(self) -> int:
        """Position of `rung` in the ladder (0 = richest)."""
        return self._idx

    @property
    def decision(self) -> Decision:
        """The decision for the next frame (the last one `update` returned)."""
        return self._decision

    @property
    def smoothed_latency_s(self) -> float | None:
        return self._smoothed

    def predicted_latency_s(self, index: int) -> float | None:
        """Latency the controller expects at ladder position `index` under the current load."""
        if self._smoothed is None:
            return None
        return self._smoothed * self._rel[index] / self._rel[self._idx]

    # -- the per-frame step -----------------------------------------------------------------------------------

    def update(self, latency_s: float, score: float | None = None, *, behind_s: float | None = None) -> Decision:
        """Report the frame just handled under `decision`; returns the decision for the next frame.

        latency_s: end-to-end time spent on that frame (for a skipped frame, the little it cost).
        score: tracking score of a processed frame (None if unknown or skipped).
        behind_s: how late the loop is against the real-time schedule, if the caller knows it (e.g. from
            buffer timestamps; a leaky live source that drops frames itself is never behind). By default it is
            derived from the latencies: each frame has one budget of 1/target_fps.
        """
        if not (latency_s >= 0 and math.isfinite(latency_s)):
            raise CKDError(f"frame latency must be a non-negative number of seconds, got {latency_s}")
        ran = self._decision
        self.frames += 1
        b = self.budget_s
        self._behind = max(0.0, self._behind + latency_s - b) if behind_s is None else max(0.0, behind_s)
        reason = "hold"
        if ran.skip:
            self.skipped += 1
        else:
            self._observe(latency_s, score)
            reason = self._choose_rung(latency_s)
        skip = self._behind >= b
        if skip:
            reason = self._skip_reason() if reason == "hold" else f"{reason}; {self._skip_reason()}"
        elif reason == "hold" and self._idx == len(self.rungs) - 1 and self._smoothed > b * (1 + self.margin_down):
            reason = (
                f"cheapest rung {self.rung} takes {self._smoothed * 1e3:.1f} ms > budget {b * 1e3:.1f} ms "
                "(the source drops frames)"
            )
        self._decision = Decision(self.rung, skip, reason)
        entry = LogEntry(
            frame=self.frames - 1,
            ran="skip" if ran.skip else str(ran.rung),
            latency_ms=latency_s * 1e3,
            smoothed_ms=(self._smoothed or 0.0) * 1e3,
            score=None if ran.skip else score,
            behind_ms=self._behind * 1e3,
            next_rung=str(self.rung),
            skip_next=skip,
            reason=reason,
        )
        self.log.append(entry)
        _LOG.debug("frame %d: %s", entry.frame, entry)
        return self._decision

    def _observe(self, latency: float, score: float | None) -> None:
        """Fold a processed frame's latency and score into the smoothed values; learn relative costs."""
        self._recent.append(latency)
        s = self._smoothed  # right after a rung change it is a prediction: restart from the first real frame
        self._smoothed = latency if (s is None or self._at_rung == 0) else s + self.alpha * (latency - s)
        self._at_rung += 1
        if score is not None and math.isfinite(score):
            q = self._score
            self._score = score if q is None else q + self.score_alpha * (score - q)
            self._update_mood()
        settle = max(self.down_frames, math.ceil(2.0 / self.alpha))
        if self._switch is not None and self._at_rung >= settle:
            src, before = self._switch
            if before > 0 and self._smoothed > 0:
                self._rel[self._idx] = self._rel[src] * self._smoothed / before
            self._switch = None
        if self._up_probe == self._idx and self._at_rung >= 2 * self.up_frames:
            self._backoff[self._idx] = max(1, self._backoff[self._idx] // 2)
            self._up_probe = None

    def _choose_rung(self, latency: float) -> str:
        """Apply the latency rule, then the score rule; move `_idx` and return the reason."""
        b, s, i, last = self.budget_s, self._smoothed, self._idx, len(self.rungs) - 1
        hi, lo = b * (1 + self.margin_down), b * (1 - self.margin_up)
        self._over = self._over + 1 if (s > hi and latency > hi) else 0
        if self._over >= self.down_frames and i < last:
            target = next((j for j in range(i + 1, last + 1) if self.predicted_latency_s(j) <= b), last)
            if self._up_probe == i:  # a step up that did not hold: wait longer before trying it again
                self._backoff[i] = min(self.max_backoff, self._backoff[i] * 2)
                self._up_probe = None
            # The load just rose and the EMA lags: the latest frames say more about the cost being left.
            before = max(s, sum(self._recent) / len(self._recent))
            return self._move(target, f"down: {s * 1e3:.1f} ms > {hi * 1e3:.1f} ms for {self._over} frames", before)
        up = self.predicted_latency_s(i - 1) if i > 0 else math.inf
        if up <= lo:
            self._fit, self._nofit = self._fit + 1, 0
        else:
            self._fit, self._nofit = 0, self._nofit + 1
        need = self.up_frames * (self._backoff[i - 1] if i > 0 else 1)
        mood = self._mood_now
        if mood == "uncertain":
            if i > 0 and up <= b and self._at_rung >= self.down_frames * self._backoff[i - 1]:
                why = f"up: score {self._score:.2f} low, {self.rungs[i - 1]} fits in {up * 1e3:.1f} ms"
                return self._move(i - 1, why)
        elif mood == "steady":
            # Run one rung cheaper than the budget affords: climb only while two rungs richer still fit.
            up2 = self.predicted_latency_s(i - 2) if i > 1 else math.inf
            if self._fit >= need and up2 <= lo:
                return self._move(i - 1, f"up: headroom, {self.rungs[i - 1]} predicted {up * 1e3:.1f} ms (steady)")
            if self._nofit >= self.up_frames and i < last:
                return self._move(i + 1, f"down: score {self._score:.2f} steady, one rung cheaper than affordable")
        elif self._fit >= need:
            return self._move(i - 1, f"up: headroom, {self.rungs[i - 1]} predicted {up * 1e3:.1f} ms < {lo * 1e3:.1f}")
        return "hold"

    def _update_mood(self) -> None:
        """Uncertain / neutral / steady from the smoothed score, debounced.

        A mood is left only a `score_band` past its threshold, and a new one counts after `score_frames` frames.
        """
        q, band, now = self._score, self.score_band, self._mood_seen
        if not (now == "uncertain" and q < self.score_low + band or now == "steady" and q > self.score_high - band):
            now = "uncertain" if q < self.score_low else "steady" if q > self.score_high else "neutral"
        self._mood_count = self._mood_count + 1 if now == self._mood_seen else 1
        self._mood_seen = now
        if self._mood_count >= self.score_frames:
            self._mood_now = now

    def _move(self, target: int, reason: str, before: float | None = None) -> str:
        src = self._idx
        if before is not None:
            self._smoothed = before
        predicted = self.predicted_latency_s(target)
        self._switch = (src, self._smoothed)
        self._up_probe = target if target < src else None
        self._idx = target
        self._smoothed = predicted
        self._over = self._fit = self._nofit = self._at_rung = 0
        self._recent.clear()
        self.changes += 1
        _LOG.info("rung %s -> %s: %s", self.rungs[src], self.rungs[target], reason)
        return reason

    def _skip_reason(self) -> str:
        b, s = self.budget_s, self._smoothed or 0.0
        behind = f"{self._behind / b:.1f} frames behind"
        if self._idx == len(self.rungs) - 1 and s > b:
            return f"skip: cheapest rung {self.rung} takes {s * 1e3:.1f} ms > budget {b * 1e3:.1f} ms, {behind}"
        return f"skip: {behind} after slow frames"

    # -- output -----------------------------------------------------------------------------------------------

    def write_log(self, path: str | Path) -> None:
        """Write the per-frame log as CSV (atomically)."""
        path = Path(path)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(LogEntry.__dataclass_fields__))
        writer.writeheader()
        for entry in self.log:
            writer.writerow(entry.as_row())
        try:
            write_text_atomic(path, buf.getvalue())
        except OSError as exc:
            raise CKDError(f"cannot write controller log {path}: {exc.strerror or exc}") from None
