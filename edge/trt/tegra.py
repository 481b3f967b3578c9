"""Jetson power and clock state: parsers for `tegrastats`, `nvpmodel -q` and `jetson_clocks --show`, and a
`TegraStats` sampler that runs `tegrastats` beside a benchmark (plain functions tested on sample text).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterable

import numpy as np

# "VDD_IN 7120mW/7120mW" (JetPack 5/6) or "VDD_IN 5012/5012", "GPU 3102/3102" (older): current/average mW.
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?![\dM])")
_GPU = re.compile(r"GR3D_FREQ\s+(\d+)%(?:@\[?(\d+)\]?)?")
_RAM = re.compile(r"RAM\s+(\d+)/(\d+)MB")
_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_NOT_RAILS = {"RAM", "SWAP"}


def parse_tegrastats(line: str) -> dict:
    """One `tegrastats` line: rails (current mW), total input power, GPU load and clock, RAM."""
    rails = {m[1]: int(m[2]) for m in _RAIL.finditer(line) if m[1] not in _NOT_RAILS}
    total_rail = next((r for r in _INPUT_RAILS if r in rails), None)
    gpu, ram = _GPU.search(line), _RAM.search(line)
    return {
        "rails_mw": rails,
        "total_mw": rails[total_rail] if total_rail else (sum(rails.values()) if rails else None),
        "total_source": total_rail or ("sum of rails" if rails else None),
        "gpu_load_pct": int(gpu[1]) if gpu else None,
        "gpu_mhz": int(gpu[2]) if gpu and gpu[2] else None,
        "ram_used_mb": int(ram[1]) if ram else None,
    }


def summarize_tegrastats(lines: Iterable[str]) -> dict | None:
    """Mean power per rail, mean total power and GPU load over sampled lines (None when there are none)."""
    samples = [parse_tegrastats(ln) for ln in lines if ln.strip()]
    samples = [s for s in samples if s["total_mw"] is not None]
    if not samples:
        return None
    rails = sorted({r for s in samples for r in s["rails_mw"]})
    loads = [s["gpu_load_pct"] for s in samples if s["gpu_load_pct"] is not None]
    return {
        "samples": len(samples),
        "total_mw_mean": float(np.mean([s["total_mw"] for s in samples])),
        "total_source": samples[0]["total_source"],
        "rails_mw_mean": {r: float(np.mean([s["rails_mw"].get(r, 0) for s in samples])) for r in rails},
        "gpu_load_pct_mean": float(np.mean(loads)) if loads else None,
    }


def parse_nvpmodel(text: str) -> dict | None:
    """`nvpmodel -q`: {'mode': '15W', 'id': 0}."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    if not m:
        return None
    ids = re.findall(r"^\s*(\d+)\s*$", text, flags=re.M)
    return {"mode": m[1], "id": int(ids[0]) if ids else None}


def parse_jetson_clocks(text: str) -> dict | None:
    """`jetson_clocks --show`: clocks are locked when every CPU and the GPU run with MinFreq == MaxFreq."""
    units = re.findall(r"^(cpu\d+|GPU)\b.*?MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)", text, flags=re.M)
    gpu = [u for u in units if u[0] == "GPU"]
    if not units:
        return None
    return {
        "locked": all(lo == hi for _, lo, hi, _ in units),
        "gpu_mhz": int(gpu[0][3]) // 1_000_000 if gpu else None,
        "gpu_max_mhz": int(gpu[0][2]) // 1_000_000 if gpu else None,
    }


def _output(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout


def power_state() -> dict:
    """nvpmodel mode and clock lock as the benchmark found them (None fields where the tools are absent)."""
    nvp, clocks = _output(["nvpmodel", "-q"]), _output(["jetson_clocks", "--show"])
    return {
        "nvpmodel": parse_nvpmodel(nvp) if nvp else None,
        "clocks": parse_jetson_clocks(clocks) if clocks else None,
    }


class TegraStats:
    """Run `tegrastats --interval MS` while the block runs; `summary()` averages what it printed.

    Without `tegrastats` on PATH (not a Jetson) it does nothing and `summary()` is None.
    """

    def __init__(self, interval_ms: int = 100) -> None:
        self.interval_ms = interval_ms
        self.lines: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> TegraStats:
        exe = shutil.which("tegrastats")
        if exe:
            self._proc = subprocess.Popen(
                [exe, "--interval", str(self.interval_ms)], stdout=subprocess.PIPE, text=True, bufsize=1
            )
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            self.lines.append(line)

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
            self._reader.join(timeout=5)

    def summary(self) -> dict | None:
        return summarize_tegrastats(self.lines)
