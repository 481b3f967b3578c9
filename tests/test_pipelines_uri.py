"""Sensor URIs: parsing, launch strings (live and replay), and that GStreamer builds them."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from ckd.errors import CKDError
from pipelines.source import GstSource, launch_string
from pipelines.uri import parse_uri


@pytest.mark.parametrize(
    "uri, role, expect",
    [
        ("v4l2:///dev/video0?format=MJPEG&width=640&height=480&fps=30", "rgb", "jpegdec"),
        ("v4l2:///dev/video1?format=GRAY16_LE&telemetry=2", "tir", "videocrop bottom=2"),
        ("rtsp://cam.local/stream?latency=50", "rgb", "rtspsrc location=rtsp://cam.local/stream latency=50"),
        ("synthetic://?seed=3&fps=9", "tir", "format=GRAY16_LE"),
        ("csi://1", "rgb", "nvarguscamerasrc sensor-id=1"),
    ],
)
def test_launch_strings(uri, role, expect):
    desc = launch_string(parse_uri(uri, role), nvidia=False)
    assert expect in desc
    assert desc.endswith("appsink name=sink max-buffers=1 drop=true sync=true")


@pytest.mark.parametrize(
    "uri, message",
    [
        ("http://x/y", "unknown URI scheme 'http'"),
        ("video.mp4", "unknown URI scheme '(none)'"),
        ("csi://left", "needs a sensor number"),
        ("v4l2:///dev/video0?format=H265", "unsupported format"),
    ],
)
def test_bad_uris_name_the_problem(uri, message):
    with pytest.raises(CKDError, match=re.escape(message)):
        parse_uri(uri, "rgb")


def test_frame_folders_are_fed_in_their_stored_format_and_replayed_without_drops(tmp_path):
    (tmp_path / "ir16").mkdir()
    for i in range(1, 4):
        cv2.imwrite(str(tmp_path / f"v{i:06d}.jpg"), np.zeros((8, 12, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "ir16" / f"i{i:06d}.png"), np.full((6, 10), 3000 + i, np.uint16))
    desc = launch_string(parse_uri(f"file://{tmp_path}?fps=10", "rgb"), nvidia=False, replay=True)
    assert desc == (
        'appsrc name=src is-live=false format=time caps="video/x-raw,format=RGB,width=12,height=8,'
        'framerate=10000/1000" ! video/x-raw,format=RGB ! appsink name=sink max-buffers=2 drop=false sync=false'
    )
    live = launch_string(parse_uri(f"file://{tmp_path}/ir16/i%06d.png", "tir"), nvidia=False)
    assert "is-live=true" in live and "format=GRAY16_LE,width=10,height=6" in live and "drop=true sync=true" in live
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    desc = launch_string(parse_uri(f"file://{video}", "tir"), nvidia=False, replay=True)
    assert desc.startswith(f'filesrc location="{video}" ! decodebin ! videoconvert ! video/x-raw,format=RGB')


def test_missing_file_empty_folder_and_element_are_reported(tmp_path):
    with pytest.raises(CKDError, match="does not exist"):
        launch_string(parse_uri(f"file://{tmp_path}/nope.mp4", "rgb"), nvidia=False)
    (tmp_path / "notes.txt").write_text("no frames here")
    with pytest.raises(CKDError, match=f"rgb source file://{tmp_path}: {tmp_path}: no numbered image frames"):
        launch_string(parse_uri(f"file://{tmp_path}", "rgb"), nvidia=False)
    (tmp_path / "v000001.jpg").write_bytes(b"")
    with pytest.raises(CKDError, match="no readable frame .*v000001.jpg is empty"):
        launch_string(parse_uri(f"file://{tmp_path}", "rgb"), nvidia=False)
    src = GstSource(parse_uri("csi://0", "rgb"), on_sample=lambda s: None, nvidia=True)
    with pytest.raises(CKDError, match="rgb source csi://0: cannot build pipeline.*nvarguscamerasrc"):
        src.build()
