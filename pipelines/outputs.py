"""Per-frame outputs: a JSONL track log, a results file in the benchmark text format, an overlay video.

`FrameRows` writes one JSONL row per source frame, in frame order, and (with `--results`) one line of boxes per
source frame: x,y,w,h in 1-based pixels, comma separated, as `ckd track` writes and `ckd eval` and the benchmark
toolkits read; a frame the run did not track is `0,0,0,0` (the toolkits' "no box": a miss, and LasHeR's toolkit
carries the previous box over it). Both files are written line by line and flushed after every frame, so after
a crash, Ctrl-C or SIGTERM they are complete up to the last processed frame (each line is whole). The overlay
video is encoded to a temporary file and renamed when the stream is finalised; RGB and thermal are shown side by
side with the box, score, FPS and rung.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from ckd.errors import CKDError

GREEN, YELLOW = (0, 255, 0), (255, 220, 0)


class JsonlWriter:
    """One JSON object per line, flushed per frame."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.lines = 0

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._f.flush()
        self.lines += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class FrameRows:
    """One JSONL row (and results line) per source frame from `first` on; frames never handed to the loop get a
    skipped row saying `gap_reason`, so line k of the results file is always frame `first + k`."""

    def __init__(
        self, jsonl: JsonlWriter, results: str | Path | None, first: int | None, gap_reason: str = "not delivered"
    ) -> None:
        self.jsonl = jsonl
        self.results_path = Path(results) if results else None
        self._results = None
        if self.results_path is not None:
            self.results_path.parent.mkdir(parents=True, exist_ok=True)
            self._results = open(self.results_path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.next = first  # index of the next row
        self.gap_reason = gap_reason
        self.rows = 0
        self.out_of_order = 0

    def write(self, index: int | None, record: dict, box=None) -> None:
        """Row of frame `index` (`box`: 0-based x, y, w, h, or None when not tracked); None: a JSONL line only."""
        if index is None:
            self.jsonl.write(record)
            return
        if self.next is None:
            self.next = index
        if index < self.next:  # live only: a lone sensor's frame numbered behind the rows already written
            self.out_of_order += 1
            self.jsonl.write({"frame": index, **record, "out_of_order": True})
            return
        for k in range(self.next, index):
            self._row(k, {"box": None, "skipped": True, "reason": self.gap_reason}, None)
        self._row(index, record, box)
        self.next = index + 1

    def _row(self, index: int, record: dict, box) -> None:
        self.jsonl.write({"frame": index, **record})
        if self._results is not None:
            if box is None:
                line = "0,0,0,0"
            else:
                x, y, w, h = (float(v) for v in box)
                line = f"{x + 1:.4f},{y + 1:.4f},{w:.4f},{h:.4f}"
            self._results.write(line + "\n")
            self._results.flush()
        self.rows += 1

    def close(self) -> None:
        self.jsonl.close()
        if self._results is not None and not self._results.closed:
            self._results.close()


def encoder_chain(gst_has) -> str:
    """H.264 encoder: NVIDIA's hardware encoder on a Jetson, x264 (or OpenH264) elsewhere."""
    if gst_has("nvv4l2h264enc"):
        return "nvvidconv ! video/x-raw(memory:NVMM),format=I420 ! nvv4l2h264enc ! h264parse"
    if gst_has("x264enc"):
        return "x264enc speed-preset=ultrafast tune=zerolatency key-int-max=30 ! h264parse"
    if gst_has("openh264enc"):
        return "openh264enc ! h264parse"
    raise CKDError("no H.264 encoder in GStreamer (install gstreamer1.0-plugins-ugly for x264enc)")


class OverlayVideo:
    """Side-by-side RGB | thermal overlay, pushed into `appsrc ! videoconvert ! H.264 ! mp4mux ! filesink`.

    Optional extra branches: `udp="host:port"` (RTP/H.264 over UDP) and `display=True` (autovideosink).
    """

    def __init__(
        self, path: str | Path, width: int, height: int, fps: float, udp: str | None = None, display: bool = False
    ):
        from pipelines.source import gst, has_element

        Gst, GLib, _ = gst()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.part")
        self.width, self.height = width, height
        self.frames = 0
        self.copies = 0  # full-frame writes into the encoder's buffers, counted where they happen
        caps = f"video/x-raw,format=RGB,width={2 * width},height={height},framerate={round(fps * 1000)}/1000"
        self._pool, self._stride = _buffer_pool(caps)
        self._pending = None
        branches = f't. ! queue ! mp4mux ! filesink location="{self.tmp}"'
        if udp:
            host, _, port = udp.rpartition(":")
            if not host or not port.isdigit():
                raise CKDError(f"--udp must be host:port, got {udp!r}")
            branches += f" t. ! queue ! rtph264pay config-interval=1 pt=96 ! udpsink host={host} port={port} sync=false"
        pre = "tee name=d d. ! queue ! videoconvert ! autovideosink sync=false d. ! queue ! " if display else ""
        desc = (
            f'appsrc name=src is-live=false format=time caps="{caps}" ! {pre}videoconvert ! video/x-raw,format=I420 ! '
            f"{encoder_chain(has_element)} ! tee name=t {branches}"
        )
        try:
            self.pipeline = Gst.parse_launch(desc)
        except GLib.Error as exc:
            raise CKDError(f"overlay video: cannot build encoder pipeline: {exc.message}") from None
        self.description = desc
        self.src = self.pipeline.get_by_name("src")
        self.duration = int(1e9 / fps)
        self.pipeline.set_state(Gst.State.PLAYING)

    def compose(
        self, rgb: np.ndarray, tir8: np.ndarray, box, score: float, fps: float, rung: str, note: str = ""
    ) -> None:
        """Draw the side-by-side frame straight into a buffer from the encoder's pool (no per-frame allocation)."""
        from pipelines.mapped import MappedFrame

        ret, buf = self._pool.acquire_buffer(None)
        if buf is None:
            raise CKDError(f"overlay video {self.path}: no buffer from the pool ({ret})")
        mapped = MappedFrame(buf, "RGB", 2 * self.width, self.height, self._stride, write=True)
        try:
            self._draw(mapped.array, rgb, tir8, box, score, fps, rung, note)
        finally:
            mapped.release()
        self._pending = buf

    def _draw(self, canvas: np.ndarray, rgb, tir8, box, score: float, fps: float, rung: str, note: str) -> None:
        w = self.width
        left, right = canvas[:, :w], canvas[:, w:]
        np.copyto(left, rgb)
        np.copyto(right, tir8[..., None] if tir8.ndim == 2 else tir8)
        self.copies += 2
        if box is not None:
            x, y, bw, bh = (int(round(v)) for v in box)
            for view in (left, right):
                cv2.rectangle(view, (x, y), (x + bw, y + bh), GREEN, 2)
        text = f"score {score:.2f}  {fps:.1f} fps  rung {rung}"
        cv2.putText(canvas, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, YELLOW, 2, cv2.LINE_AA)
        if note:
            cv2.putText(canvas, note, (8, 46), cv2.FONT_HERSHEY_SIMPLEX, 0.5, YELLOW, 1, cv2.LINE_AA)

    def push(self) -> None:
        from pipelines.source import gst

        Gst, _, _ = gst()
        buf, self._pending = self._pending, None
        buf.pts = self.frames * self.duration
        buf.duration = self.duration
        self.src.emit("push-buffer", buf)
        self.frames += 1

    def close(self, timeout_s: float = 20.0) -> Path | None:
        """Finish the MP4 (EOS, wait for the muxer) and rename it into place; None if no frame was written."""
        from pipelines.source import gst

        Gst, _, _ = gst()
        self.src.emit("end-of-stream")
        msg = self.pipeline.get_bus().timed_pop_filtered(
            int(timeout_s * 1e9), Gst.MessageType.EOS | Gst.MessageType.ERROR
        )
        self.pipeline.set_state(Gst.State.NULL)
        self._pool.set_active(False)
        if msg is not None and msg.type == Gst.MessageType.ERROR:
            err, _ = msg.parse_error()
            self.tmp.unlink(missing_ok=True)
            raise CKDError(f"overlay video {self.path}: element '{msg.src.get_name()}': {err.message}")
        if self.frames and msg is None:
            print(
                f"overlay video {self.path}: not finalised (no end of stream within {timeout_s:g} s)", file=sys.stderr
            )
        if self.frames == 0 or msg is None or not self.tmp.exists():
            self.tmp.unlink(missing_ok=True)
            return None
        os.replace(self.tmp, self.path)
        return self.path


def _buffer_pool(caps_text: str, buffers: int = 8):
    """A pool of frame buffers for the caps (recycled once the encoder is done with them) and their row stride."""
    from pipelines.source import gst

    Gst, _, GstVideo = gst()
    caps = Gst.Caps.from_string(caps_text)
    info = GstVideo.VideoInfo.new_from_caps(caps)
    pool = Gst.BufferPool.new()
    config = pool.get_config()
    Gst.BufferPool.config_set_params(config, caps, info.size, 2, buffers)
    if not pool.set_config(config) or not pool.set_active(True):
        raise CKDError("overlay video: cannot set up the frame buffer pool")
    return pool, info.stride[0]
