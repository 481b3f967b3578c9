"""The keep-ratio controller driving a real tracker (nano model, torch CPU), with and without overload: on a
simulated clock in make test (the model's time is a fixed cost per rung), on the wall clock with `pytest -m timing`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sim_clock import CLOCKS

from ckd.data.synthetic import SyntheticSequence
from ckd.data.thermal import thermal_to_8bit
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd.track.torch_backend import TorchBackend
from ckd.track.tracker import Tracker
from pipelines.controller import Rung, RungController
from pipelines.pacing import FramePacer


@pytest.fixture
def tracker():
    """A nano-model tracker on one intra-op thread (two stall for hundreds of ms on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    try:
        yield Tracker(TorchBackend(CKDNet(preset("nano")), threads=1))
    finally:
        torch.set_num_threads(threads)


@CLOCKS
def test_controller_drives_nano_tracker_and_skips_when_every_rung_misses_budget(tracker, clock):
    clock = clock()
    seq = SyntheticSequence(seed=3, frames=40, width=320, height=240)
    frames = []
    for i in range(len(seq)):
        f = seq.frame(i)
        frames.append((f.rgb, thermal_to_8bit(f.thermal16), f.box))
    fps, overload_from, end, extra = 20.0, 1.5, 4.5, 0.07  # 50 ms budget; +70 ms per frame overloads every rung
    rungs = [Rung(1.0), Rung(0.7), Rung(0.5)]
    tracker.init(*frames[0])
    for rung in rungs:  # warm every rung's path up outside the timed run
        tracker.update(*frames[1][:2], keep_ratio=rung.keep_ratio)
    model_s = {1.0: 0.012, 0.7: 0.009, 0.5: 0.007}  # simulated clock: the nano model's time per rung
    ctl, pacer = RungController(rungs, fps), FramePacer(fps, clock=clock, sleep=clock.sleep)
    log: list[tuple[float, bool, float]] = []  # (start time, skipped, latency)
    for n, t in enumerate(pacer.slots(end)):
        t0 = clock()
        rgb, tir, _ = frames[1 + n % (len(frames) - 1)]
        d, score = ctl.decision, None
        if not d.skip:
            box, score = tracker.update(rgb, tir, keep_ratio=d.rung.keep_ratio)
            clock.account(model_s[d.rung.keep_ratio])
            assert np.isfinite(box).all() and 0.0 <= score <= 1.0
            if t >= overload_from:
                clock.spin(extra)
        latency = clock() - t0
        ctl.update(latency, score)
        log.append((t, d.skip, latency))

    def rate(rows: list[tuple[float, bool, float]]) -> float:
        return (len(rows) - 1) / (rows[-1][0] - rows[0][0])

    easy = [r for r in log if 0.3 <= r[0] < overload_from]
    assert not any(s for _, s, _ in easy)  # nano (about 10 ms a frame) makes 20 fps easily
    assert abs(rate(easy) - fps) / fps <= 0.05, f"{rate(easy):.1f} fps before the overload, target {fps}"
    settled = [r for r in log if overload_from + 1.0 <= r[0]]
    ran = [r for r in settled if not r[1]]
    cost = float(np.mean([lat for _, _, lat in ran]))
    assert cost > 1.2 / fps
    # The stream still advances at the target rate; the processed share is what the budget affords.
    assert abs(rate(settled) - fps) / fps <= 0.05, f"stream at {rate(settled):.1f} fps, target {fps}"
    share = len(ran) / len(settled)
    assert abs(share - 1.0 / (fps * cost)) <= 0.1, f"processed {share:.2f} of frames at {cost * 1e3:.0f} ms each"
    assert ctl.rung == rungs[-1]
    assert len(ctl.log) == len(log)
    skips = [e for e in ctl.log if e.skip_next and e.frame >= len(log) - len(settled)]
    assert skips and all("cheapest rung 0.5/fp32" in e.reason for e in skips)
