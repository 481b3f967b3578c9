"""`ckd run` as users run it: --print-pipeline, bad URIs, a sensor that never delivers, and SIGINT / SIGTERM
(how systemd stops the service) leaving complete outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

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
    assert main(["run", "--rgb", "synthetic://", "--tir", "synthetic://", "--replay", "--print-pipeline"]) == 0
    assert capsys.readouterr().out.count("is-live=false") == 2
    assert main(["run", "--rgb", "gopher://x", "--tir", "synthetic://"]) == 2
    assert "rgb source 'gopher://x': unknown URI scheme 'gopher'" in capsys.readouterr().err


def test_a_sensor_that_never_delivers_is_one_error_line_and_a_non_zero_exit(tmp_path, capsys):
    bogus = tmp_path / "clip.mp4"
    bogus.write_text("this is not a video\n" * 100)
    uri = "synthetic://?seed=1&fps=30&frames=30&width=160&height=120"
    args = ["run", "--tir", uri, "--random-preset", "nano", "--threads", "1", "--init", "10,10,20,20", "--no-overlay"]
    # a file that does not decode: its source errors before any frame
    assert main([*args, "--rgb", f"file://{bogus}", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"ckd run: error: rgb source file://{bogus}: GStreamer element 'decodebin0': This appears to be a text file "
        "(no frame delivered)"
    )
    report = json.loads((tmp_path / "a" / "latency.json").read_text())  # the outputs are still finished
    assert report["sources"]["rgb"]["error"] and report["sources"]["rgb"]["frames"] == 0
    # a sensor that stays silent
    silent = "synthetic://?seed=1&fps=30&frames=30&width=160&height=120&stall_after=0&stall_s=30"
    argv = [*args[:1], "--rgb", uri, "--tir", silent, *args[3:], "--first-frame-timeout", "1"]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"ckd run: error: tir source {silent}: no frame delivered (nothing within 1 s of the start)"
    )


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_end_cleanly_with_complete_outputs(tmp_path, sig, code):
    out = tmp_path / "run"
    uri = "synthetic://?seed=6&fps=30&frames=900&width=160&height=120"
    cmd = [*CKD, "run", "--rgb", uri, "--tir", uri, "--random-preset", "nano", "--threads", "1", "--out", str(out)]
    cmd += ["--results", str(out / "res.txt")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    jsonl = out / "track.jsonl"
    deadline = time.monotonic() + 60  # a safety time-out for a hung start, not a timing check
    while time.monotonic() < deadline and (not jsonl.exists() or jsonl.read_text().count("\n") < 30):
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    assert f"{sig.name}: outputs finished" in err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]  # every line whole
    frames = [r for r in lines if "frame" in r]
    report = json.loads((out / "latency.json").read_text())
    assert report["stopped_by"] == sig.name and report["interrupted"]
    assert 30 <= len(frames) < 900 and len(frames) == report["results_rows"]
    assert len((out / "res.txt").read_text().splitlines()) == len(frames)  # results complete to the last frame
    tracked = sum(1 for r in frames if r["box"] is not None)
    assert tracked == report["frames_processed"]
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == tracked  # the MP4 was finalised, not left half-written
    assert not list(Path(out).glob(".*.part")) and (out / "controller.csv").is_file()
    if sig == signal.SIGTERM:  # systemd stops the service with SIGTERM: its unit takes this exit as a clean stop
        from edge.deploy.scripts import SERVICE_UNIT

        assert f"SuccessExitStatus={code}" in SERVICE_UNIT.splitlines()
