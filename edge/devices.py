"""Device profiles: Jetson modules and discrete GPUs, the JetPack release table, detection from the filesystem.

Detection reads `/etc/nv_tegra_release` (the L4T release) and `/proc/device-tree/model` (the module),
both under a `root` so tests can point it at sample files. Discrete GPUs are described from
`nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader` output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from ckd.errors import CKDError


@dataclass(frozen=True)
class JetPackRelease:
    """One JetPack release and what it ships."""

    jetpack: str
    l4t: str
    cuda: str
    tensorrt: str


# JetPack <-> L4T <-> CUDA <-> TensorRT (NVIDIA release notes). The kit needs TensorRT 8.5+ (JetPack 5.1+).
JETPACK: tuple[JetPackRelease, ...] = (
    JetPackRelease("4.6", "32.6.1", "10.2", "8.0.1"),
    JetPackRelease("4.6.1", "32.7.1", "10.2", "8.2.1"),
    JetPackRelease("4.6.4", "32.7.4", "10.2", "8.2.1"),
    JetPackRelease("5.0.2", "35.1.0", "11.4", "8.4.1"),
    JetPackRelease("5.1", "35.2.1", "11.4", "8.5.2"),
    JetPackRelease("5.1.1", "35.3.1", "11.4", "8.5.2"),
    JetPackRelease("5.1.2", "35.4.1", "11.4", "8.5.2"),
    JetPackRelease("5.1.3", "35.5.0", "11.4", "8.5.2"),
    JetPackRelease("5.1.4", "35.6.0", "11.4", "8.5.2"),
    JetPackRelease("6.0", "36.3.0", "12.2", "8.6.2"),
    JetPackRelease("6.1", "36.4.0", "12.6", "10.3.0"),
    JetPackRelease("6.2", "36.4.3", "12.6", "10.3.0"),
    JetPackRelease("6.2.1", "36.4.4", "12.6", "10.3.0"),
)
MIN_TENSORRT = (8, 5)


@dataclass(frozen=True)
class DeviceProfile:
    """What a device can do, and what the kit should use on it."""

    key: str
    name: str
    integrated: bool  # Jetson: CPU and GPU share DRAM, so mapped pinned memory is zero-copy
    compute_capability: str
    dla_cores: int
    jetpack_majors: tuple[int, ...] = ()  # JetPack generations the module runs (empty: discrete GPU)
    fast_fp16: bool = True
    fast_int8: bool = True

    @property
    def precisions(self) -> tuple[str, ...]:
        """Engine precisions worth building here, fastest first."""
        out = []
        if self.fast_int8:
            out.append("int8")
        if self.fast_fp16:
            out.append("fp16")
        return (*out, "fp32")

    @property
    def default_precision(self) -> str:
        """`best` where INT8 and FP16 both run fast (time both, keep the winner), else the fastest available."""
        return "best" if self.fast_int8 and self.fast_fp16 else self.precisions[0]


PROFILES: dict[str, DeviceProfile] = {
    p.key: p
    for p in (
        DeviceProfile("orin-nano", "Jetson Orin Nano", True, "8.7", 0, (5, 6)),
        DeviceProfile("orin-nx", "Jetson Orin NX", True, "8.7", 2, (5, 6)),
        DeviceProfile("agx-orin", "Jetson AGX Orin", True, "8.7", 2, (5, 6)),
        DeviceProfile("xavier-nx", "Jetson Xavier NX", True, "7.2", 2, (4, 5)),
        DeviceProfile("agx-xavier", "Jetson AGX Xavier", True, "7.2", 2, (4, 5)),
    )
}


def parse_nv_tegra_release(text: str) -> str:
    """L4T version from `/etc/nv_tegra_release` ('# R35 (release), REVISION: 3.1, ...' -> '35.3.1')."""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", text)
    if not m:
        raise CKDError(f"cannot parse nv_tegra_release: {text.strip()[:60]!r}")
    return f"{int(m[1])}.{int(m[2])}.{int(m[3])}"


def jetpack_for_l4t(l4t: str) -> JetPackRelease:
    """The JetPack release of an L4T version; an unknown point release maps to the closest older one."""
    key = tuple(int(x) for x in l4t.split("."))
    same_major = [r for r in JETPACK if int(r.l4t.split(".")[0]) == key[0]]
    older = [r for r in same_major if tuple(int(x) for x in r.l4t.split(".")) <= key]
    if not older:
        raise CKDError(f"L4T R{l4t} is not a JetPack release the kit knows (supported: JetPack 5.1+ / 6.x)")
    return max(older, key=lambda r: tuple(int(x) for x in r.l4t.split(".")))


def profile_from_model(model: str, memory_gb: float | None = None) -> DeviceProfile:
    """Jetson module from the device-tree model string ('NVIDIA Jetson Orin Nano Developer Kit')."""
    m = model.replace("\x00", " ").lower()
    if "orin" in m:
        if "nano" in m:
            return PROFILES["orin-nano"]
        if "nx" in m:
            # Orin NX 8GB has one DLA, the 16GB module two.
            nx = PROFILES["orin-nx"]
            return replace(nx, dla_cores=1) if memory_gb is not None and memory_gb < 12 else nx
        return PROFILES["agx-orin"]
    if "xavier" in m:
        return PROFILES["xavier-nx"] if "nx" in m else PROFILES["agx-xavier"]
    if "jetson-agx" in m:  # JetPack 4 spells AGX Xavier this way
        return PROFILES["agx-xavier"]
    raise CKDError(f"unknown Jetson module {model.strip(chr(0)).strip()!r}")


def profile_from_nvidia_smi(text: str) -> DeviceProfile:
    """Discrete GPU from `nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader` (first GPU)."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    parts = [p.strip() for p in line.rsplit(",", 1)]
    if len(parts) != 2 or not re.fullmatch(r"\d+\.\d+", parts[1]):
        raise CKDError(f"cannot parse nvidia-smi output: {line[:60]!r}")
    name, cc = parts
    major, minor = (int(x) for x in cc.split("."))
    key = "gpu-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return DeviceProfile(
        key=key,
        name=name,
        integrated=False,
        compute_capability=cc,
        dla_cores=0,
        fast_fp16=(major, minor) >= (6, 0) and (major, minor) != (6, 1),  # GP102/104/106 consumer Pascal: slow FP16
        fast_int8=(major, minor) >= (6, 1),
    )


@dataclass(frozen=True)
class Device:
    """A detected device: its profile and, on Jetson, the installed JetPack."""

    profile: DeviceProfile
    l4t: str | None = None
    jetpack: JetPackRelease | None = None
    model: str = ""

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def is_jetson(self) -> bool:
        return self.profile.integrated

    def check_supported(self) -> None:
        """CKDError when the JetPack's TensorRT is older than the kit needs."""
        if self.jetpack is None:
            return
        trt = tuple(int(x) for x in self.jetpack.tensorrt.split(".")[:2])
        if trt < MIN_TENSORRT:
            raise CKDError(
                f"{self.name} runs JetPack {self.jetpack.jetpack} (TensorRT {self.jetpack.tensorrt}); "
                "the kit needs TensorRT 8.5+: flash JetPack 5.1 or newer"
            )


def _meminfo_gb(root: Path) -> float | None:
    try:
        text = (root / "proc/meminfo").read_text()
    except OSError:
        return None
    m = re.search(r"MemTotal:\s+(\d+)\s+kB", text)
    return int(m[1]) / 1024**2 if m else None


def detect_jetson(root: str | Path = "/") -> Device | None:
    """The Jetson under `root`, or None when there is no `/etc/nv_tegra_release`."""
    root = Path(root)
    release = root / "etc/nv_tegra_release"
    if not release.is_file():
        return None
    l4t = parse_nv_tegra_release(release.read_text(errors="replace"))
    model_file = root / "proc/device-tree/model"
    try:
        model = model_file.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        raise CKDError(f"{model_file}: cannot read the Jetson module name") from None
    profile = profile_from_model(model, _meminfo_gb(root))
    return Device(profile, l4t=l4t, jetpack=jetpack_for_l4t(l4t), model=model)


def detect(root: str | Path = "/") -> Device:
    """This machine's device: a Jetson from its files, else the first discrete GPU via nvidia-smi."""
    jetson = detect_jetson(root)
    if jetson is not None:
        return jetson
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise CKDError("no NVIDIA device found (no /etc/nv_tegra_release and no nvidia-smi)")
    out = subprocess.run(
        [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
    )
    if out.returncode != 0:
        raise CKDError(f"nvidia-smi failed: {out.stderr.strip()[:120]}")
    profile = profile_from_nvidia_smi(out.stdout)
    return Device(profile, model=profile.name)
