"""The conditions a benchmark ran under: CPU, threads, library versions, model hashes, Jetson power mode."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from quantize.cpu_target import cpu_flags, host_cpuinfo

# CPU flags that decide which GEMM kernels run (x86 SIMD / VNNI / AMX, Arm NEON / dot product / SVE).
RELEVANT_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "sve",
    "i8mm",
)
LIBRARIES = ("numpy", "torch", "onnx", "onnxruntime", "opencv-python-headless", "tensorrt", "ckd-edge")


def cpu_info(cpuinfo: str | Path | None = None) -> dict:
    """CPU model, the relevant ISA flags and core counts (logical, usable by this process).

    `cpuinfo` None: this machine's, read as `quantize.cpu_target` reads it (`CKD_CPUINFO` under an emulator), so
    the flags shown are those the INT8 target is chosen from."""
    model = platform.processor() or platform.machine()
    text = host_cpuinfo(None if cpuinfo is None else Path(cpuinfo))
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
    flags = cpu_flags(text)[1]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model,
        "machine": platform.machine(),
        "flags": [f for f in RELEVANT_FLAGS if f in flags],
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide the numbers (None = not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def thread_settings() -> dict:
    """Thread counts as the runtimes see them, and the environment variables that set them."""
    import torch

    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ}
    return {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads(), "env": env}


def jetson_power(root: str | Path = "/") -> dict | None:
    """nvpmodel mode and clock lock on a Jetson (`edge.trt.tegra.power_state`), None elsewhere."""
    if not (Path(root) / "etc/nv_tegra_release").exists():
        return None
    from edge.trt.tegra import power_state

    model = Path(root) / "proc/device-tree/model"
    return {"model": model.read_text(errors="replace").strip("\x00\n") if model.exists() else None, **power_state()}


def environment(models: dict[str, str] | None = None, threads: int | None = None) -> dict:
    """Everything a reader needs to judge the numbers: machine, software, threads, model hashes (name -> sha256)."""
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": cpu_info(),
        "threads": {"requested": threads, **thread_settings()},
        "libraries": library_versions(),
        "models": dict(models or {}),
        "jetson": jetson_power(),
    }
