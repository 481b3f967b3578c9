"""INT8 Q/DQ graphs in TensorRT's explicit-quantization format (separate from the ONNX Runtime CPU graphs).

TensorRT takes symmetric INT8 only (zero point 0; onnx-tensorrt `QuantDequantLinearHelper`), activations per
tensor, weights per output channel, and keeps biases float (an INT32 `DequantizeLinear` does not parse). Placement
follows its explicit-quantization guide: Q/DQ in front of the inputs of the weight-bearing GEMMs and convolutions
the precision policy allows (`quantize.policy`), their outputs left float, so every residual `Add` sees two float
inputs and nothing forces a requantization between a GEMM and the skip connection. The quantizer is ONNX Runtime's
`quantize_static` (QDQ format) with those settings; the ranges come from the same calibration set as the CPU graphs.

`activation_scales` reads a Q/DQ graph's activation scales back, for the TensorRT 8.x calibration cache
(`calibration.trt_cache`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from calibration.readers import ort_reader
from calibration.store import CalibrationSet
from ckd.errors import CKDError
from quantize.policy import QUANTIZE_OPS, excluded_nodes
from quantize.ptq import _quiet

METHODS = ("minmax", "percentile", "entropy")
# GEMM and convolution outputs stay float: no Q/DQ between a GEMM and the residual add / activation after it.
FLOAT_OUTPUT_OPS = ("Gemm", "Conv", "MatMul")


def quantize_trt(src: Path, dst: Path, cal: CalibrationSet, method: str = "percentile") -> None:
    """Quantize the graph `src` into `dst` for TensorRT (written whole; the caller makes it atomic)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calib = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in calib:
        raise CKDError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    extra = {
        "ActivationSymmetric": True,  # zero point 0: the only form TensorRT parses
        "WeightSymmetric": True,
        "QuantizeBias": False,  # float bias: TensorRT refuses INT32 DequantizeLinear
        "OpTypesToExcludeOutputQuantization": list(FLOAT_OUTPUT_OPS),
        "CalibPercentile": 99.99,
    }
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        quantize_static(
            str(src),
            str(dst),
            ort_reader(cal),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZE_OPS),
            nodes_to_exclude=excluded_nodes(onnx.load(str(src))),
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calib[method],
            extra_options=extra,
        )


def activation_scales(model) -> dict[str, float]:
    """Per-tensor scale of every activation a Q/DQ graph quantizes, by the FP32 graph's tensor name."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scales = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in consts:
            continue
        scale = consts.get(node.input[1])
        if scale is not None and scale.size == 1:
            scales[node.input[0]] = float(scale.reshape(-1)[0])
    return scales
