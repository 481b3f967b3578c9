"""Test helpers for deployment bundles: a real bundle from toy exports, unpacking, running the real install.sh."""

from __future__ import annotations

import atexit
import functools
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from toy_export import toy_export

from edge.deploy.bundle import build_wheel, make_bundle


@functools.lru_cache(maxsize=1)
def kit_wheel() -> Path:
    """The kit's wheel, built once per test process (pip wheel of this checkout)."""
    folder = Path(tempfile.mkdtemp(prefix="ckd-test-wheel-"))
    atexit.register(shutil.rmtree, folder, True)
    return build_wheel(folder)


def build_bundle(tmp: Path, **kwargs) -> Path:
    """A bundle of toy fp32 + int8 exports (keep ratios 1.0, 0.7) at `tmp/out/ckd.tar.gz`."""
    toy_export(tmp / "export", ratios=(1.0, 0.7))
    toy_export(tmp / "int8", ratios=(1.0, 0.7), int8=True)
    kwargs.setdefault("int8_dir", tmp / "int8")
    kwargs.setdefault("wheel", kit_wheel())
    return make_bundle(tmp / "export", tmp / "out" / "ckd.tar.gz", **kwargs)


def extract(bundle: Path, dest: Path) -> Path:
    """Unpack with tar's data filter; returns the bundle's top folder."""
    with tarfile.open(bundle) as tar:
        tar.extractall(dest, filter="data")
    (top,) = list(dest.iterdir())
    return top


def install_sh(root: Path, *args: str) -> subprocess.CompletedProcess:
    """The bundle's real installer (only modes that change nothing are used in tests)."""
    return subprocess.run(["bash", str(root / "install.sh"), *args], capture_output=True, text=True, timeout=120)


def systemd_words(line: str) -> list[str]:
    """An ExecStart= value split as systemd does for what the kit writes: C-style quotes, `%%` and `$$` undoubled."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line)]
