"""Nearest-timestamp pairing: counts, tolerance, stale and out-of-order frames (no GStreamer)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.pairing import Lockstep, Pairer, default_tolerance


def _arrivals(fps_a: float, fps_b: float, seconds: float, jitter: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    events = []
    for role, fps in (("rgb", fps_a), ("tir", fps_b)):
        t = (
            np.arange(0, seconds, 1 / fps)
            + rng.uniform(0, jitter, int(np.ceil(seconds * fps)))[: int(np.ceil(seconds * fps))]
        )
        events += [(float(x), role) for x in t]
    return sorted(events)


def test_default_tolerance_is_half_the_slower_period():
    assert default_tolerance(30, 9) == pytest.approx(0.5 / 9)


def test_30_and_9_fps_pair_once_per_slow_frame():
    events = _arrivals(30, 9, seconds=3.0, jitter=0.004)
    p = Pairer(default_tolerance(30, 9))
    pairs = []
    for t, role in events:
        p.push(role, t, (role, t))
        got = p.pop()
        if got:
            pairs.append(got)
    n_tir = sum(1 for _, r in events if r == "tir")
    assert len(pairs) == n_tir == 27
    for (ta, _), (tb, _) in pairs:
        assert abs(ta - tb) <= 1 / 30 + 0.004  # the newest rgb frame at arrival: within one rgb period
    st = p.stats
    assert st.pairs == 27 and st.received["rgb"] == 90
    assert st.dropped["rgb"] + len(p.queues["rgb"]) == 90 - 27


def test_each_frame_used_once_and_newest_pair_wins():
    p = Pairer(0.02)
    for t in (0.0, 0.1, 0.2):
        p.push("rgb", t)
    p.push("tir", 0.005)
    p.push("tir", 0.195)
    (ta, _), (tb, _) = p.pop()
    assert (ta, tb) == (0.2, 0.195)  # newest pair; the older ones are stale
    assert p.stats.dropped == {"rgb": 2, "tir": 1}
    assert p.pop() is None


def test_out_of_tolerance_frames_never_pair_and_are_dropped():
    p = Pairer(0.01)
    p.push("rgb", 0.0)
    p.push("tir", 0.5)
    assert p.pop() is None
    assert p.stats.dropped["rgb"] == 1 and not p.queues["rgb"]  # can never match a newer thermal frame
    p.push("tir", 0.4)  # backwards timestamp
    assert p.stats.out_of_order["tir"] == 1


def test_depth_bounds_the_backlog():
    p = Pairer(0.01, depth=3)
    for i in range(10):
        p.push("rgb", i * 0.1)
    assert len(p.queues["rgb"]) == 3 and p.stats.dropped["rgb"] == 7


def _drain(lock: Lockstep) -> list:
    out = []
    while (got := lock.pop()) is not None:
        out.append(got)
    return out


def test_lockstep_pairs_by_index_and_accounts_for_every_frame():
    lock = Lockstep()  # image frames: pair by frame number
    for i in (0, 1, 2, 4, 5, 6):  # rgb frame 3 is unreadable
        lock.push("rgb", i, f"r{i}")
    for i in (0, 1, 3, 4):  # tir frame 2 is unreadable, the clip ends at 4
        lock.push("tir", i, f"t{i}")
    assert not lock.needs("rgb") and not lock.needs("tir")
    assert _drain(lock) == [
        ("pair", "r0", "t0"),
        ("pair", "r1", "t1"),
        ("alone", "rgb", "r2"),
        ("alone", "tir", "t3"),
        ("pair", "r4", "t4"),
    ]
    assert lock.needs("tir") and not lock.done  # rgb 5 waits: a tir frame 5 may still come
    lock.end("tir")
    assert _drain(lock) == [("alone", "rgb", "r5"), ("alone", "rgb", "r6")]
    lock.end("rgb")
    assert lock.done and lock.pairs == 3 and lock.alone == {"rgb": 3, "tir": 1}


def test_lockstep_by_timestamp_pairs_within_tolerance_in_order():
    lock = Lockstep(tolerance=0.02)
    for t in (0.0, 0.1, 0.2, 0.3):
        lock.push("rgb", t, t)
    for t in (0.005, 0.19, 0.31):  # the thermal frame near 0.1 is missing
        lock.push("tir", t, t)
    lock.end("rgb")
    lock.end("tir")
    got = _drain(lock)
    assert got == [("pair", 0.0, 0.005), ("alone", "rgb", 0.1), ("pair", 0.2, 0.19), ("pair", 0.3, 0.31)]
    assert lock.done
