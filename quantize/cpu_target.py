"""Which INT8 format is exact on which CPU: detection from /proc/cpuinfo, the format per target, the load-time check.

ONNX Runtime runs every u8 x s8 product of a Q/DQ graph (QGemm, QLinearConv, QLinearMatMul, MatMulInteger) with
its MLAS integer GEMM, whose kernel depends on the CPU (`onnxruntime/core/mlas/lib/platform.cpp`):

- x86 with AVX2 or AVX-512 but no VNNI: `MlasGemmU8S8KernelAvx2` / `...Avx512Core` multiply u8 by s8 with
  `VPMADDUBSW`, which adds each pair of products into a *saturating 16-bit* sum before widening. With full-range
  weights (|w| <= 127) and activations up to 255 a pair reaches 2 x 255 x 127 = 64770 > 32767: the result is
  clamped, silently. ONNX Runtime's quantization guide names the two cures: `reduce_range` (7-bit weights,
  |w| <= 64, so a pair stays <= 2 x 255 x 64 = 32640) or U8U8 (widened to 16 bits first, `VPMADDWD`, slower).
- x86 with AVX-512 VNNI or AVX-VNNI: `VPDPBUSD` accumulates u8 x s8 straight into 32 bits: exact at full range.
- Arm64: `UDOT`/`SDOT` with dotprod (Jetson Orin's Cortex-A78AE), `UMMLA`/`SMMLA` with i8mm, and without either
  the NEON kernel (`qgemm_kernel_neon.cpp`: s8 weights flipped to u8 when packed, u8 x u8 products accumulated into
  32 bits): no 16-bit saturating sum, exact at full range.

U8U8 products (activation x activation, as in the `balanced` tier's attention core) are exact on every CPU above.
The target and format are written into the INT8 manifest by `ckd quantize`; `check_int8_format` refuses, at
load time, a graph whose format would saturate on the CPU it is about to run on.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

TARGETS = ("vnni", "avx2", "arm")
# CKD_CPUINFO names another file to read the flags from: under an emulator (QEMU user mode shows the host's
# /proc/cpuinfo, not the emulated CPU's) or to check a graph for another machine.
CPUINFO = Path(os.environ.get("CKD_CPUINFO", "/proc/cpuinfo"))
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # AMX machines have AVX-512 VNNI too


@dataclass(frozen=True)
class Int8Format:
    """How a graph's INT8 weights are stored, and on which targets its u8 x s8 products are exact."""

    name: str
    reduce_range: bool
    weight_max: int  # largest |int8 weight| the quantizer writes
    exact_on: tuple[str, ...]
    summary: str


FORMATS: dict[str, Int8Format] = {
    f.name: f
    for f in (
        Int8Format("u8s8", False, 127, ("vnni", "arm"), "U8S8, full-range 8-bit weights"),
        Int8Format("u8s8-w7", True, 64, TARGETS, "U8S8, 7-bit weights (reduce_range)"),
        # NVIDIA Model Optimizer's TensorRT-style graphs: on x86 ONNX Runtime turns the s8 activations into u8
        # (QDQS8ToU8Transformer) and runs the same U8S8 kernels, full-range weights.
        Int8Format("s8s8", False, 127, ("vnni", "arm"), "S8S8 (Model Optimizer), full-range 8-bit weights"),
        # ONNX Runtime's MatMulNBits (benchmark route): products of int8 activations and 4-bit weights stay far
        # below 16 bits (2 x 127 x 8) on every kernel.
        Int8Format("int4", False, 8, TARGETS, "4-bit block weights (MatMulNBits)"),
    )
}
FORMAT_FOR_TARGET = {"vnni": "u8s8", "avx2": "u8s8-w7", "arm": "u8s8"}
LEGACY_FORMAT = "u8s8"  # INT8 manifests written before the format was recorded: full-range U8S8


def cpu_flags(cpuinfo_text: str) -> tuple[str, set[str]]:
    """("x86" or "arm", ISA flags) from the text of /proc/cpuinfo (x86 `flags`, Arm `Features`); ("", set())
    when it has neither."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "flags":
            return "x86", set(value.split())
        if key == "features":
            return "arm", set(value.split())
    return "", set()


def target_from_cpuinfo(cpuinfo_text: str, machine: str = "") -> str:
    """The `--cpu-target` that describes a CPU: "arm", "vnni" (x86 with a 32-bit-accumulating int8 dot product)
    or "avx2" (any other x86, whose U8S8 kernels saturate at full range)."""
    arch, flags = cpu_flags(cpuinfo_text)
    if arch == "arm" or (not arch and machine.lower() in ("aarch64", "arm64")):
        return "arm"
    return "vnni" if flags.intersection(VNNI_FLAGS) else "avx2"


def describe(cpuinfo_text: str) -> str:
    """One phrase for messages: the target and the flags that decided it."""
    arch, flags = cpu_flags(cpuinfo_text)
    if arch == "arm":
        have = [f for f in ("asimddp", "i8mm") if f in flags]
        return f"Arm ({', '.join(have) or 'NEON'})"
    have = [f for f in ("avx2", "avx512bw", *VNNI_FLAGS) if f in flags]
    return f"x86 ({', '.join(have) or 'no AVX2'}{'' if flags.intersection(VNNI_FLAGS) else ', no VNNI'})"


def host_cpuinfo(path: Path | None = None) -> str:
    """This machine's /proc/cpuinfo text (`CKD_CPUINFO` under an emulator), or the file `path`; "" where there is
    none."""
    try:
        return (path or CPUINFO).read_text()
    except OSError:
        return ""


def host_target() -> str:
    return target_from_cpuinfo(host_cpuinfo(), platform.machine())


def host_format() -> Int8Format:
    """The INT8 format `ckd quantize --cpu-target auto` picks on this machine."""
    return FORMATS[FORMAT_FOR_TARGET[host_target()]]


def resolve_target(target: str) -> str:
    """`auto` -> this machine's target; a named target is checked and returned."""
    from ckd.errors import CKDError

    if target == "auto":
        return host_target()
    if target not in TARGETS:
        raise CKDError(f"unknown --cpu-target {target!r}; choose from auto, {', '.join(TARGETS)}")
    return target


def check_int8_format(record: dict | None, where: str) -> None:
    """Refuse (CKDError, one line) to run an INT8 graph whose format saturates on this CPU.

    `record` is the INT8 manifest's `calibration` entry (`cpu_target`, `int8_format`); manifests without a format
    were written as full-range U8S8."""
    from ckd.errors import CKDError

    record = record or {}
    name = record.get("int8_format", LEGACY_FORMAT)
    fmt = FORMATS.get(name)
    if fmt is None:
        raise CKDError(f"{where}: unknown INT8 format {name!r} in the manifest (known: {', '.join(FORMATS)})")
    text = host_cpuinfo()
    here = target_from_cpuinfo(text, platform.machine())
    if here not in fmt.exact_on and name == "s8s8":  # written as S8S8 whatever --cpu-target said
        raise CKDError(
            f"{where}: TensorRT-format INT8 graphs (S8S8 with full-range 8-bit weights, from `ckd quantize --format "
            f"trt` or `--engine modelopt`) would saturate in ONNX Runtime on this CPU [{describe(text)}]; "
            "--cpu-target does not change that format: check them on a CPU with VNNI or on Arm; on the device, "
            "`ckd build` gates their engines against the reference outputs"
        )
    if here not in fmt.exact_on:
        made_for = record.get("cpu_target") or "an unrecorded CPU"
        raise CKDError(
            f"{where}: INT8 graphs quantized for --cpu-target {made_for} ({fmt.summary}) would saturate on this CPU "
            f"[{describe(text)}]; quantize them again with `ckd quantize --cpu-target {here}`"
        )
