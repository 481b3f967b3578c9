"""TensorRT API-shape decisions against small fake modules (shape only: no fake is ever run)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from ckd.errors import CKDError
from edge.trt.flags import builder_flags, detect, int8_route, network_flags


def fake_trt(version: str):
    """A module shaped like `tensorrt` of the given version: only attribute names, as the docs list them."""
    major, minor = (int(x) for x in version.split(".")[:2])
    named = (major, minor) >= (8, 5)
    engine = {"num_io_tensors": 0, "get_tensor_name": 0, "get_tensor_mode": 0} if named else {"num_bindings": 0}
    context = {"execute_async_v2": 0}
    if named:
        context |= {"execute_async_v3": 0, "set_tensor_address": 0}
    config = {"create_timing_cache": 0, "set_timing_cache": 0}
    config |= {"set_memory_pool_limit": 0} if (major, minor) >= (8, 4) else {"max_workspace_size": 0}
    net = {"EXPLICIT_BATCH": 0}
    if major >= 10:
        net["STRONGLY_TYPED"] = 1
    mod = NS(
        __version__=version,
        ICudaEngine=NS(**engine),
        IExecutionContext=NS(**context),
        IBuilderConfig=NS(**config),
        Builder=NS(build_serialized_network=0),
        NetworkDefinitionCreationFlag=NS(**net),
        MemoryPoolType=NS(WORKSPACE=0),
        DeviceType=NS(GPU=0, DLA=1),
        BuilderFlag=NS(GPU_FALLBACK=0, FP16=1, INT8=2),
        IInt8EntropyCalibrator2=object,
    )
    return mod


def test_trt10_shape():
    trt = fake_trt("10.3.0")
    f = detect(trt)
    assert f.major == 10 and f.named_tensors and f.execute_v3 and f.memory_pool_limit
    assert not f.explicit_batch_flag  # deprecated no-op in 10: not passed
    f.require_supported()
    assert network_flags(trt, f) == 0  # weakly typed, no EXPLICIT_BATCH
    # weakly typed with FP16 + INT8: layers outside Q/DQ run FP16, not the FP32 a strongly typed graph forces
    assert int8_route(f, has_qdq=True, has_calibration_cache=True) == "qdq"
    with pytest.raises(CKDError, match="ckd quantize --format trt"):
        int8_route(f, has_qdq=False, has_calibration_cache=True)  # no calibrator path on 10.x


@pytest.mark.parametrize("version", ["8.5.2", "8.6.2"])
def test_trt8_shape(version):
    trt = fake_trt(version)
    f = detect(trt)
    assert f.named_tensors and f.execute_v3 and f.explicit_batch_flag
    f.require_supported()
    assert network_flags(trt, f) == 1 << 0  # EXPLICIT_BATCH only
    assert int8_route(f, has_qdq=True, has_calibration_cache=False) == "qdq"
    assert int8_route(f, has_qdq=False, has_calibration_cache=True) == "calibration-cache"


def test_trt82_refused():
    f = detect(fake_trt("8.2.1"))
    assert not f.named_tensors and not f.memory_pool_limit
    with pytest.raises(CKDError, match=r"TensorRT 8\.2\.1 is too old"):
        f.require_supported()


def test_builder_flags():
    assert builder_flags("fp16", dla=False, pinned_layers=False) == ("FP16",)
    assert builder_flags("int8", dla=False, pinned_layers=False) == ("FP16", "INT8")
    assert builder_flags("int8", dla=True, pinned_layers=True) == (
        "FP16",
        "INT8",
        "GPU_FALLBACK",
        "OBEY_PRECISION_CONSTRAINTS",
    )
    assert builder_flags("fp32", dla=False, pinned_layers=True) == ()
