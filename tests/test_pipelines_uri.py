"""Sensor URIs: parsing, launch strings, and that GStreamer builds them."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from ckd.errors import CKDError
from pipelines.source import GstSource
from pipelines.uri import image_sequence, launch_string, parse_uri


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


def test_image_folder_becomes_multifilesrc(tmp_path):
    for i in range(1, 4):
        cv2.imwrite(str(tmp_path / f"v{i:06d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert image_sequence(tmp_path) == (str(tmp_path / "v%06d.jpg"), 1)
    desc = launch_string(parse_uri(f"file://{tmp_path}?fps=10", "tir"), nvidia=False)
    assert "multifilesrc" in desc and "start-index=1" in desc and "framerate=10000/1000" in desc


def test_missing_file_and_element_are_reported(tmp_path):
    with pytest.raises(CKDError, match="does not exist"):
        launch_string(parse_uri(f"file://{tmp_path}/nope.mp4", "rgb"), nvidia=False)
    src = GstSource(parse_uri("csi://0", "rgb"), on_sample=lambda s: None, nvidia=True)
    with pytest.raises(CKDError, match="rgb source csi://0: cannot build pipeline.*nvarguscamerasrc"):
        src.build()
