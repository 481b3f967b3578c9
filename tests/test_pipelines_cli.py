"""`ckd run` as users run it: --print-pipeline, bad URIs, and Ctrl-C leaving complete outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2

from ckd_cli.main import main

CKD = [sys.executable, "-m", "ckd_cli.main"]


def test_print_pipeline_and_bad_uri(capsys):
    assert (
        main(["run", "--rgb", "v4l2:///dev/video0?format=MJPEG", "--tir", "synthetic://?fps=9", "--print-pipeline"])
        == 0
    )
    out = capsys.readouterr().out
    assert "rgb: v4l2src device=/dev/video0 ! image/jpeg ! jpegdec" in out
    assert "tir: appsrc name=src is-live=true" in out and "GRAY16_LE" in out
    assert main(["run", "--rgb", "gopher://x", "--tir", "synthetic://"]) == 2
    assert "rgb source 'gopher://x': unknown URI scheme 'gopher'" in capsys.readouterr().err


def test_undecodable_file_is_reported_with_its_element(tmp_path, capsys):
    bogus = tmp_path / "clip.mp4"
    bogus.write_text("this is not a video\n" * 100)
    uri = "synthetic://?seed=1&fps=30&frames=30&width=160&height=120"
    args = [
        "run",
        "--rgb",
        f"file://{bogus}",
        "--tir",
        uri,
        "--random-preset",
        "nano",
        "--threads",
        "1",
        "--init",
        "10,10,20,20",
    ]
    assert main([*args, "--out", str(tmp_path / "out"), "--no-overlay"]) == 0
    out = capsys.readouterr().out
    assert f"rgb: rgb source file://{bogus}: GStreamer element 'decodebin0': This appears to be a text file" in out
    report = json.loads((tmp_path / "out" / "latency.json").read_text())
    assert report["sources"]["rgb"]["error"] and report["sources"]["tir"]["frames"] == 30


def test_ctrl_c_ends_cleanly_with_complete_outputs(tmp_path):
    out = tmp_path / "run"
    uri = "synthetic://?seed=6&fps=30&frames=900&width=160&height=120"
    cmd = [*CKD, "run", "--rgb", uri, "--tir", uri, "--random-preset", "nano", "--threads", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    jsonl = out / "track.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jsonl.exists() or jsonl.read_text().count("\n") < 30):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err[-2000:]
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]  # every line whole
    frames = [r for r in lines if "frame" in r]
    report = json.loads((out / "latency.json").read_text())
    assert report["interrupted"] and 30 <= len(frames) == report["frames_processed"] + report["frames_skipped"]
    assert len(frames) < 900
    tracked = sum(1 for r in frames if not r.get("skipped"))
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == tracked  # the MP4 was finalised, not left half-written
    assert not list(Path(out).glob(".*.part"))
