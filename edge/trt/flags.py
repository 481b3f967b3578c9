"""Which TensorRT Python API a module offers, decided in one place (8.5, 8.6 and 10.x differ).

Everything else asks a `TrtFeatures` instead of checking versions: name-based tensor I/O,
`execute_async_v3`, the explicit-batch flag, workspace limits, timing caches, DLA.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from ckd.errors import CKDError


def import_tensorrt() -> ModuleType:
    """`import tensorrt`, or a CKDError telling the user how to get it (JetPack ships it)."""
    try:
        import tensorrt
    except ImportError:
        raise CKDError(
            "TensorRT Python bindings not found: on Jetson install JetPack (python3-libnvinfer) and use a venv "
            "made with --system-site-packages; on a PC `pip install tensorrt`"
        ) from None
    return tensorrt


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in str(text).split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


@dataclass(frozen=True)
class TrtFeatures:
    """API shape of one `tensorrt` module."""

    version: str
    named_tensors: bool  # engine.num_io_tensors / get_tensor_name / get_tensor_mode (8.5+)
    execute_v3: bool  # context.set_tensor_address + execute_async_v3 (8.5+)
    explicit_batch_flag: bool  # EXPLICIT_BATCH must be passed to create_network (8.x; deprecated no-op in 10)
    memory_pool_limit: bool  # config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, n) (8.4+)
    build_serialized: bool  # builder.build_serialized_network (8.0+; build_engine removed in 10)
    timing_cache: bool  # config.create_timing_cache / set_timing_cache
    int8_calibrator: bool  # IInt8EntropyCalibrator2 exists (deprecated in 10.1, used only on 8.x)
    dla: bool  # DeviceType.DLA + BuilderFlag.GPU_FALLBACK

    @property
    def major(self) -> int:
        return _version_tuple(self.version)[0]

    def require_supported(self) -> None:
        """The kit needs the name-based API (TensorRT 8.5 or newer)."""
        if not (self.named_tensors and self.execute_v3 and self.build_serialized):
            raise CKDError(
                f"TensorRT {self.version} is too old: the kit needs 8.5+ (name-based tensors, execute_async_v3); "
                "flash JetPack 5.1+ or 6.x"
            )


def detect(trt: ModuleType) -> TrtFeatures:
    """Inspect a `tensorrt` module (or anything shaped like one) for the API names the kit uses."""
    engine = getattr(trt, "ICudaEngine", object)
    context = getattr(trt, "IExecutionContext", object)
    config = getattr(trt, "IBuilderConfig", object)
    builder = getattr(trt, "Builder", object)
    net_flags = getattr(trt, "NetworkDefinitionCreationFlag", object)
    version = str(getattr(trt, "__version__", "0"))
    major = _version_tuple(version)[0]
    return TrtFeatures(
        version=version,
        named_tensors=all(hasattr(engine, n) for n in ("num_io_tensors", "get_tensor_name", "get_tensor_mode")),
        execute_v3=hasattr(context, "execute_async_v3") and hasattr(context, "set_tensor_address"),
        explicit_batch_flag=hasattr(net_flags, "EXPLICIT_BATCH") and major < 10,
        memory_pool_limit=hasattr(config, "set_memory_pool_limit") and hasattr(trt, "MemoryPoolType"),
        build_serialized=hasattr(builder, "build_serialized_network"),
        timing_cache=hasattr(config, "create_timing_cache") and hasattr(config, "set_timing_cache"),
        int8_calibrator=hasattr(trt, "IInt8EntropyCalibrator2"),
        dla=hasattr(getattr(trt, "DeviceType", object), "DLA")
        and hasattr(getattr(trt, "BuilderFlag", object), "GPU_FALLBACK"),
    )


def network_flags(trt: ModuleType, features: TrtFeatures) -> int:
    """Bits for `builder.create_network`: EXPLICIT_BATCH on 8.x; networks are weakly typed (`int8_route`)."""
    flags = 0
    if features.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return flags


def int8_route(features: TrtFeatures, has_qdq: bool, has_calibration_cache: bool) -> str:
    """How INT8 is built: 'qdq' (the Q/DQ graph, weakly typed with the FP16 and INT8 flags, on every version) or
    'calibration-cache' (the FP32 graph + a calibrator replaying a cache: TensorRT 8.x only).

    Not strongly typed on 10.x: a strongly typed network runs every layer outside Q/DQ (LayerNorm, Softmax,
    attention, GELU) in the graph's FP32, so INT8 would lose to FP16; weakly typed, TensorRT picks FP16 there.
    """
    if has_qdq:
        return "qdq"
    if has_calibration_cache and features.major < 10 and features.int8_calibrator:
        return "calibration-cache"
    raise CKDError(
        f"no INT8 source for TensorRT {features.version}: run `ckd quantize --format trt` to export Q/DQ rungs"
        + ("" if features.major >= 10 else " (or provide a calibration cache)")
    )


def builder_flags(precision: str, dla: bool, pinned_layers: bool) -> tuple[str, ...]:
    """`trt.BuilderFlag` names for an engine: FP16 for fp16, FP16 + INT8 for int8 (layers outside Q/DQ in FP16),
    GPU_FALLBACK on a DLA, OBEY_PRECISION_CONSTRAINTS when layers are pinned to FP32 (decomposed LayerNorm)."""
    flags = {"fp16": ("FP16",), "int8": ("FP16", "INT8"), "fp32": ()}[precision]
    if dla:
        flags += ("GPU_FALLBACK",)
    if pinned_layers and precision != "fp32":
        flags += ("OBEY_PRECISION_CONSTRAINTS",)
    return flags
