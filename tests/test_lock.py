"""The venv the suite runs in is exactly the committed lock: every installed distribution pinned, same version."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: not an exact pin: {line!r}"
        pins[_norm(name)] = version.strip()
    return pins


def test_lock_pins_every_installed_distribution():
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running in a venv made by `make venv`")
    pins = read_lock(LOCK)
    installed = {_norm(d.metadata["Name"]): d.version.split("+")[0] for d in metadata.distributions()}
    installed.pop("ckd-edge", None)
    unpinned = sorted(set(installed) - set(pins))
    differ = sorted(
        f"{n} {installed[n]} (lock {pins[n]})" for n in set(installed) & set(pins) if installed[n] != pins[n]
    )
    assert not unpinned, f"installed but not in {LOCK.name} (run `make lock`): {unpinned}"
    assert not differ, f"installed versions differ from {LOCK.name}: {differ}"


def test_lock_holds_the_core_runtime():
    pins = read_lock(LOCK)
    for name in ("torch", "onnx", "onnxruntime", "numpy", "opencv-python-headless", "pygobject"):
        assert name in pins, name
    assert pins["torch"] == "2.13.0"
