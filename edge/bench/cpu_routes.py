"""ONNX Runtime's other INT8 CPU routes for the same FP32 rungs, for `benchmarks/int8_speed.py` to time beside the
static Q/DQ tiers. Each writes an export-style folder (rungs + manifest) that `OrtBackend` runs.

- `dynamic`: `onnxruntime.quantization.quantize_dynamic` on the linear layers (activation scales computed per
  frame; ONNX Runtime fuses them into `DynamicQuantizeMatMul`), weights in the CPU target's INT8 format.
- `int4`: 4-bit block-quantized weights (block 32 along K, symmetric) behind a `DequantizeLinear`, which ONNX
  Runtime fuses into its `MatMulNBits` contrib kernel (activations quantized to int8 on the fly at its default
  accuracy level 4).

Both need the linear layers as `MatMul` + `Add` (ONNX Runtime's dynamic quantizer and the `MatMulNBits` fusion do
not take `Gemm`): `matmul_form` rewrites the export's 2-D `Gemm` nodes (transB=1, weight and bias initializers).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edge.manifest import Manifest, Rung, rung_filename
from quantize.cpu_target import FORMAT_FOR_TARGET, FORMATS
from quantize.policy import excluded_nodes
from quantize.ptq import _quiet

ROUTES = ("dynamic", "int4")
INT4_BLOCK = 32


def matmul_form(model):
    """A copy of an `onnx.ModelProto` whose `Gemm(A, W, b, transB=1)` nodes with initializer W, b are
    `MatMul(A, W^T) + b` (same names, `/MatMul` and `/Add` suffixes), so MatMul-only quantizers see them."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name: t for t in model.graph.initializer}
    nodes = []
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type != "Gemm" or attrs.get("transB") != 1 or attrs.get("transA", 0) or n.input[1] not in inits:
            nodes.append(n)
            continue
        w = inits[n.input[1]]
        w.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(w).T), w.name))
        mm = n.output[0] + "_mm" if len(n.input) > 2 else n.output[0]
        nodes.append(helper.make_node("MatMul", [n.input[0], n.input[1]], [mm], name=n.name[: -len("Gemm")] + "MatMul"))
        if len(n.input) > 2:
            nodes.append(helper.make_node("Add", [mm, n.input[2]], [n.output[0]], name=n.name[: -len("Gemm")] + "Add"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def int4_weights(model, block: int = INT4_BLOCK):
    """Replace every constant MatMul weight (K x N, K a multiple of `block`) the conservative policy quantizes by
    int4 blocks + `DequantizeLinear(axis=0, block_size)`; scales symmetric per block (max |w| / 7)."""
    import ml_dtypes
    from onnx import helper, numpy_helper, version_converter

    model = version_converter.convert_version(model, 21)  # blocked DequantizeLinear and int4 need opset 21
    inits = {t.name: t for t in model.graph.initializer}
    keep = set(excluded_nodes(model))
    new_nodes = []
    for n in model.graph.node:
        w = inits.get(n.input[1]) if n.op_type == "MatMul" and n.name not in keep else None
        if w is not None and len(w.dims) == 2 and w.dims[0] % block == 0:
            arr = numpy_helper.to_array(w).astype(np.float32)
            k, cols = arr.shape
            blocks = arr.reshape(k // block, block, cols)
            scale = np.maximum(np.abs(blocks).max(axis=1), 1e-12) / 7.0
            q = np.clip(np.round(blocks / scale[:, None, :]), -8, 7).reshape(k, cols).astype(ml_dtypes.int4)
            model.graph.initializer.remove(w)
            model.graph.initializer.extend(
                [numpy_helper.from_array(q, w.name + "_q4"), numpy_helper.from_array(scale, w.name + "_s4")]
            )
            dq = helper.make_node(
                "DequantizeLinear", [w.name + "_q4", w.name + "_s4"], [w.name], axis=0, block_size=block
            )
            new_nodes.append(dq)
        new_nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return model


def write_route(route: str, fp32_dir: str | Path, out_dir: str | Path, cpu_target: str) -> Manifest:
    """Write every FP32 rung of `fp32_dir` through `route` into `out_dir` (+ manifest, precision int8)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Manifest.load(fp32_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fmt = FORMAT_FOR_TARGET[cpu_target] if route == "dynamic" else "int4"
    rungs = []
    for rung in src.rungs:
        dst = out_dir / rung_filename(rung.keep_ratio, "int8")
        model = matmul_form(onnx.load(str(src.path(rung))))
        if route == "int4":
            onnx.save(int4_weights(model), dst)
        elif route == "dynamic":
            with tempfile.TemporaryDirectory() as tmp, _quiet():
                onnx.save(model, Path(tmp) / "mm.onnx")
                quantize_dynamic(
                    Path(tmp) / "mm.onnx",
                    dst,
                    op_types_to_quantize=["MatMul"],
                    nodes_to_exclude=excluded_nodes(model),
                    per_channel=True,
                    reduce_range=FORMATS[fmt].reduce_range,
                    weight_type=QuantType.QInt8,
                    extra_options={"MatMulConstBOnly": True},
                )
        else:
            raise ValueError(f"unknown route {route!r} (one of {ROUTES})")
        rungs.append(Rung.from_file(dst, rung.keep_ratio, "int8"))
    record = {"engine": f"ort-{route}", "cpu_target": cpu_target, "int8_format": fmt, "tier": "conservative"}
    manifest = dataclasses.replace(src, rungs=rungs, calibration=record, directory=None)
    manifest.save(out_dir)
    return manifest
