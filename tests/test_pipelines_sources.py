"""Real GStreamer sources: pair counts at different frame rates, zero-copy views, a source that dies."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from pipelines.pairing import Pairer, default_tolerance
from pipelines.source import GstRig
from pipelines.uri import parse_uri


def _run_rig(uris: dict[str, str], seconds: float, keep: bool = False):
    """Run two sources until both end (`seconds`: a safety time-out only), pairing as frames arrive (like the
    loop); return (pairs, rig, samples kept)."""
    pairer = Pairer(default_tolerance(*(parse_uri(u, r).number("fps", 30) for r, u in uris.items())))
    lock, pairs, kept = threading.Lock(), [], []

    def on_sample(s):
        with lock:
            pairer.push(s.role, s.timestamp, s)
            if keep and len(kept) < 4:
                kept.append(s)
            got = pairer.pop()
            if got:
                pairs.append((got[0][0], got[1][0]))

    rig = GstRig([parse_uri(uris["rgb"], "rgb"), parse_uri(uris["tir"], "tir")], on_sample)
    rig.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds and any(s.alive for s in rig.sources):
        time.sleep(0.02)
    rig.stop()
    return pairs, pairer, rig, kept


def test_synthetic_30_and_9_fps_pair_once_per_thermal_frame():
    size = "&width=160&height=120"
    pairs, pairer, rig, _ = _run_rig(
        {"rgb": f"synthetic://?seed=1&fps=30&frames=45{size}", "tir": f"synthetic://?seed=1&fps=9&frames=14{size}"},
        seconds=60.0,
    )
    rgb, tir = rig.sources
    assert rgb.frames == 45 and tir.frames == 14 and rgb.eos and tir.eos
    # every thermal frame finds its RGB partner (within half a thermal period; in practice one RGB period)
    assert 13 <= len(pairs) <= 14
    assert all(abs(a - b) <= 1 / 30 + 0.01 for a, b in pairs)
    assert pairer.stats.dropped["rgb"] >= 45 - 14 - 2  # the unpaired RGB frames are counted, not queued


def test_image_folders_at_30_and_10_fps_pair(tmp_path):
    for i in range(30):
        cv2.imwrite(str(tmp_path / f"v{i + 1:06d}.jpg"), np.full((96, 128, 3), 4 * i, np.uint8))
    (tmp_path / "ir").mkdir()
    for i in range(10):
        cv2.imwrite(str(tmp_path / "ir" / f"i{i + 1:06d}.png"), np.full((60, 80), 20 * i, np.uint8))
    pairs, pairer, rig, kept = _run_rig(
        {"rgb": f"file://{tmp_path}?fps=30", "tir": f"file://{tmp_path}/ir?fps=10"}, seconds=60.0, keep=True
    )
    assert [s.frames for s in rig.sources] == [30, 10]
    assert len(pairs) == 10 and pairer.stats.pairs == 10
    # timestamps on the pipeline clock follow the frame rates
    assert np.allclose(np.diff([b for _, b in pairs]), 0.1, atol=0.01)
    # zero-copy: the numpy frame is the mapped GStreamer memory, and mapping twice gives the same memory
    s = next(k for k in kept if k.role == "rgb")
    m1, m2 = s.map(), s.map()
    assert m1.array.__array_interface__["data"][0] == m1.address == m2.address
    assert m1.array.shape == (96, 128, 3) and not m1.array.flags.writeable and not m1.array.flags.owndata
    m1.release(), m2.release()


def test_a_source_that_errors_is_reported_by_name_and_element():
    size = "&width=160&height=120"
    _, _, rig, _ = _run_rig(
        {
            "rgb": f"synthetic://?seed=2&fps=30&frames=30{size}",
            "tir": f"synthetic://?seed=2&fps=30&error_after=5{size}",
        },
        seconds=60.0,
    )
    rgb, tir = rig.sources
    assert tir.frames == 5 and rgb.frames == 30 and rgb.error is None
    assert tir.error == (
        f"tir source synthetic://?seed=2&fps=30&error_after=5{size}: GStreamer element 'src': sensor disconnected"
    )
    assert tir.error in rig.events


def test_timestamp_jumps_fall_back_to_arrival_time():
    from pipelines.source import frame_time

    s = 1_000_000_000
    assert frame_time(5 * s + 1000, 5 * s + 2000, 4.9) == (5.000001, False)  # normal: the buffer's own time
    assert frame_time(9 * s, 5 * s, 4.9) == (5.0, True)  # jumped 4 s ahead of the clock: arrival time
    assert frame_time(None, 5 * s, 4.9) == (5.0, False)  # no PTS: arrival time
    ts, jumped = frame_time(4 * s, 4 * s, 4.5)  # backwards: kept monotonic
    assert jumped and 4.5 < ts < 4.5001


def test_caps_that_do_not_negotiate_are_explained():
    from pipelines.source import describe_error, gst

    Gst, _, _ = gst()
    pipe = Gst.parse_launch(  # a source delivering RGB into a sink that only takes GRAY8
        'appsrc name=src format=time caps="video/x-raw,format=RGB,width=8,height=8,framerate=1/1" ! '
        "appsink caps=video/x-raw,format=GRAY8"
    )
    pipe.set_state(Gst.State.PLAYING)
    pipe.get_by_name("src").emit("push-buffer", Gst.Buffer.new_wrapped(bytes(8 * 8 * 3)))
    msg = pipe.get_bus().timed_pop_filtered(5 * Gst.SECOND, Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    text = describe_error(parse_uri("v4l2:///dev/video0", "rgb"), msg)
    assert text.startswith("rgb source v4l2:///dev/video0: GStreamer element 'src': ")
    assert text.endswith("(caps did not negotiate: check format/width/height/fps options)")


def test_mapped_frame_views_buffer_memory_and_rejects_short_buffers():
    import pytest

    from ckd.errors import CKDError
    from pipelines.mapped import MappedFrame
    from pipelines.source import gst

    Gst, _, _ = gst()
    data = np.arange(6 * 4 * 2, dtype="<u2").tobytes()  # a 6x4 GRAY16_LE frame, rows of 12 bytes
    buf = Gst.Buffer.new_wrapped(data)
    m = MappedFrame(buf, "GRAY16_LE", 6, 4, stride=12)
    assert m.array.dtype == np.uint16 and m.array[3, 5] == 23 and m.array.__array_interface__["data"][0] == m.address
    m.release()
    with pytest.raises(CKDError, match="96 bytes is too small for a 8x8 RGB frame"):
        MappedFrame(buf, "RGB", 8, 8)


def test_buffer_pointer_layout_is_verified_and_views_never_outlive_the_mapping():
    import pytest

    from ckd.errors import CKDError
    from pipelines import mapped
    from pipelines.source import gst

    Gst, _, _ = gst()
    mapped.check_layout()  # this PyGObject: the pointer after the object head is the GstBuffer PyGObject hashes
    buf = Gst.Buffer.new_wrapped(bytes(range(24)))  # a 4x6 GRAY8 frame
    assert mapped.buffer_pointer(buf) == hash(buf)
    with pytest.raises(CKDError, match="not a GStreamer buffer wrapper"):
        mapped.buffer_pointer(Gst.Caps.from_string("video/x-raw"))  # another boxed type: refused, not read
    escaped, live = mapped.MappedFrame.escaped, mapped.MappedFrame.live
    with mapped.MappedFrame(buf, "GRAY8", 6, 4, stride=6) as m:
        view = m.array[1:, 2:]  # a view that outlives release()
        inner = m.array[2]
        assert mapped.MappedFrame.live == live + 1
    del inner
    assert m.array is None and mapped.MappedFrame.escaped == escaped + 1
    assert view[2, 3] == 3 * 6 + 5 and mapped.MappedFrame.live == live + 1  # still mapped while a view lives
    del view  # the last view goes: now the buffer is unmapped
    assert mapped.MappedFrame.live == live
    with mapped.MappedFrame(buf, "GRAY8", 6, 4, stride=6) as m:
        total = int(m.array.sum())  # a number, not a view
    assert total == sum(range(24)) and mapped.MappedFrame.escaped == escaped + 1 and mapped.MappedFrame.live == live
    pool_buf = Gst.Buffer.new_allocate(None, 24, None)
    with pytest.raises(CKDError, match="mapped for writing outlived release"):
        with mapped.MappedFrame(pool_buf, "GRAY8", 6, 4, stride=6, write=True) as w:
            kept = w.array
    assert kept.flags.writeable
