"""Post-training INT8 quantization of one ONNX rung into explicit Q/DQ form.

Default: ONNX Runtime `quantize_static` (QDQ, per-channel symmetric INT8 weights, asymmetric UINT8
activations = U8S8), restricted to a precision tier's op types minus the nodes its rules keep float
(`quantize.policy`), with the weight range of the INT8 format chosen for the target CPU
(`quantize.cpu_target`: full range where the CPU accumulates in 32 bits, 7-bit weights where it saturates).
When NVIDIA Model Optimizer (`nvidia-modelopt[onnx]`) is importable and asked for, its ONNX PTQ writes
TensorRT-style Q/DQ with the conservative tier's exclusions (untested on this CPU box).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

from calibration.readers import modelopt_arrays, ort_reader
from calibration.store import CalibrationSet
from ckd.errors import CKDError
from quantize.cpu_target import FORMATS
from quantize.policy import QUANTIZE_OPS, TIERS, Tier, excluded_nodes

METHODS = ("minmax", "percentile", "entropy")


@contextlib.contextmanager
def _quiet():
    """Silence the quantizer's progress prints and root-logger warnings (the CLI shows its own bar)."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def modelopt_available() -> bool:
    try:
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError:
        return False
    return True


def quantize_qdq(src: Path, dst: Path, reader, fmt: str, tier: Tier, method: str = "percentile") -> None:
    """ONNX Runtime static QDQ quantization of `src` into `dst` (written whole; caller makes it atomic), calibrated
    by an ONNX Runtime `CalibrationDataReader`, with the INT8 format `fmt` (`cpu_target.FORMATS`) and a tier."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calib = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    calib["entropy"] = CalibrationMethod.Entropy
    if method not in calib:
        raise CKDError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    exclude = excluded_nodes(onnx.load(str(src)), tier.rules, tier.ops)
    extra = {"CalibPercentile": 99.99, "ActivationSymmetric": False, "WeightSymmetric": True}
    extra["OpTypesToExcludeOutputQuantization"] = list(tier.float_output_ops)
    # Not CalibMaxIntermediateOutputs: ORT 1.32's MinMax calibrator clears the batch without folding it in.
    # Calibration memory therefore grows with the sample count (~0.3 GB per sample for the base model).
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        quantize_static(
            str(src),
            str(dst),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(tier.ops),
            nodes_to_exclude=exclude,
            per_channel=True,
            reduce_range=FORMATS[fmt].reduce_range,  # weights only: activations keep the full u8 range
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=calib[method],
            extra_options=extra,
        )


def quantize_modelopt(src: Path, dst: Path, cal: CalibrationSet, method: str = "entropy") -> None:
    """NVIDIA Model Optimizer ONNX PTQ (INT8, explicit Q/DQ for TensorRT) with the policy's exclusions."""
    import onnx
    from modelopt.onnx.quantization import quantize

    quantize(
        str(src),
        quantize_mode="int8",
        calibration_data=modelopt_arrays(cal),
        calibration_method="max" if method == "minmax" else "entropy",
        calibration_eps=["cpu"],
        op_types_to_quantize=list(QUANTIZE_OPS),
        nodes_to_exclude=excluded_nodes(onnx.load(str(src))),  # the conservative tier
        output_path=str(dst),
    )


def quantize_rung(
    src: Path,
    dst: Path,
    cal: CalibrationSet,
    engine: str = "ort",
    method: str = "percentile",
    fmt: str = "u8s8",
    tier: str = "conservative",
) -> None:
    """Quantize one graph with `engine` "ort" (INT8 format `fmt`, precision tier `tier`) or "modelopt"."""
    if engine == "modelopt":
        if not modelopt_available():
            raise CKDError("--engine modelopt needs `pip install 'ckd-edge[modelopt]'` (nvidia-modelopt[onnx])")
        quantize_modelopt(src, dst, cal, method)
    elif engine == "ort":
        quantize_qdq(src, dst, ort_reader(cal), fmt, TIERS[tier], method)
    else:
        raise CKDError(f"unknown quantization engine {engine!r} (ort or modelopt)")
