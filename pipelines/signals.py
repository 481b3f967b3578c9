"""SIGINT and SIGTERM end `ckd run` the same way: the loop stops after the frame in hand and finishes its outputs.

systemd stops a service with SIGTERM; without a handler Python dies on it at once (no latency.json, a half-written
`.overlay.mp4.part`). Inside `StopSignals` both signals only set `received`, which the loop checks between frames,
so every output is closed normally; a second SIGINT raises KeyboardInterrupt for a loop that does not stop.
"""

from __future__ import annotations

import signal
import threading

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # 128 + signal number, the shell's convention


class StopSignals:
    """Context manager: SIGINT/SIGTERM set `received` ("SIGINT"/"SIGTERM") instead of killing (main thread only)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.received == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt
        self.received = self.received or name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
