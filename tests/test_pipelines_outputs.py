"""Overlay video (MP4 + RTP/UDP branch), the per-frame JSONL writer and the per-source-frame rows."""

from __future__ import annotations

import json
import socket

import cv2
import numpy as np
import pytest

from ckd.data.boxes import read_boxes
from ckd.errors import CKDError
from pipelines.outputs import FrameRows, JsonlWriter, OverlayVideo, encoder_chain
from pipelines.source import has_element


def test_overlay_mp4_and_udp_stream(tmp_path):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    video = OverlayVideo(tmp_path / "o.mp4", 160, 120, 15, udp=f"127.0.0.1:{port}")
    rgb = np.zeros((120, 160, 3), np.uint8)
    tir = np.full((120, 160), 200, np.uint8)
    for i in range(12):
        video.compose(rgb, tir, (10 + i, 20, 30, 40), 0.5, 15.0, "0.7")
        video.push()
    packet = rx.recv(65536)
    assert len(packet) > 12 and packet[1] & 0x7F == 96  # RTP, payload type 96 (H.264)
    assert video.close() == tmp_path / "o.mp4" and not list(tmp_path.glob(".*.part"))
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ok, img = cap.read()
    assert ok and img.shape == (120, 320, 3)
    assert img[60, 240].mean() > 150 and img[60, 120].mean() < 60  # thermal on the right, RGB on the left
    assert img[20, 30, 1] > 150  # the green box edge on the RGB view
    assert video.copies == 24  # two half-frame writes per composed frame, counted where they happen


def test_jsonl_is_complete_line_by_line(tmp_path):
    w = JsonlWriter(tmp_path / "t.jsonl")
    for i in range(3):
        w.write({"frame": i, "box": [1.0, 2.0, 3.0, 4.0]})
        # flushed per frame: a reader sees every line written so far, whole
        assert [json.loads(x)["frame"] for x in (tmp_path / "t.jsonl").read_text().splitlines()] == list(range(i + 1))
    w.close()
    assert w.lines == 3


def test_encoder_choice_prefers_jetson_hardware_and_explains_absence():
    assert "nvv4l2h264enc" in encoder_chain(lambda name: name in ("nvv4l2h264enc", "x264enc"))
    assert encoder_chain(has_element).startswith("x264enc")  # this machine: software x264
    with pytest.raises(CKDError, match="no H.264 encoder"):
        encoder_chain(lambda name: False)


def test_rows_are_one_per_source_frame_with_gaps_filled_and_results_in_benchmark_format(tmp_path):
    rows = FrameRows(JsonlWriter(tmp_path / "t.jsonl"), tmp_path / "res" / "seq.txt", first=3, gap_reason="gone")
    rows.write(None, {"event": "rgb source: end of stream"})
    rows.write(4, {"box": [10.0, 20.0, 30.0, 40.0]}, box=(10.0, 20.0, 30.0, 40.0))
    assert (tmp_path / "res" / "seq.txt").read_text().splitlines() == ["0,0,0,0", "11.0000,21.0000,30.0000,40.0000"]
    rows.write(7, {"box": None, "skipped": True, "reason": "tir frame 7 corrupt"})
    rows.write(5, {"box": [1, 2, 3, 4]}, box=(1, 2, 3, 4))  # behind the rows written: JSONL only, flagged
    rows.close()
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r.get("frame") for r in lines] == [None, 3, 4, 5, 6, 7, 5]
    assert lines[1] == {"frame": 3, "box": None, "skipped": True, "reason": "gone"} and lines[-1]["out_of_order"]
    boxes = read_boxes(tmp_path / "res" / "seq.txt")  # frames 3..7: line k is frame 3 + k
    assert boxes.shape == (5, 4) and rows.rows == 5 and rows.out_of_order == 1
    assert boxes[1].tolist() == [11, 21, 30, 40] and not boxes[[0, 2, 3, 4]].any()
