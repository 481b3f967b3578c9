"""Offline TensorRT lint: every node of an ONNX graph that the TensorRT ONNX parser of one generation would refuse.

Four kinds of rule, each citing its source:
- `opset` / `operator` / `dtype`: the operator table of `edge.trt.onnx_support` (onnx-tensorrt `docs/operators.md`
  at 8.5-GA, 8.6-GA, 10.1-GA): an operator without importer, a tensor type it does not list.
- `attribute`: the table's "Restrictions" column where a graph shows it (inputs that must be initializers,
  unsupported attributes and outputs).
- `qdq`: explicit quantization as onnx-tensorrt's `QuantDequantLinearHelper` (builtin_op_importers.cpp, same
  branches) and TensorRT's developer guide ("Explicit Quantization") state it: INT8 only (UINT8 and INT32 are
  refused), zero point present (8.x) and all zero, a positive constant scale, per-channel scales only on constant
  weights with one scale per channel of the axis.

Host side (reads graphs with `onnx`); `ckd check-trt`, `ckd export`, `ckd quantize` and `ckd flash` run it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ckd.errors import CKDError
from edge.trt.onnx_support import CAST_DOWN, GENERATIONS, OPERATORS, OPSETS, generation

SOURCE = {
    "8.5": "onnx-tensorrt 8.5-GA",
    "8.6": "onnx-tensorrt 8.6-GA",
    "10": "onnx-tensorrt 10.1-GA",
}
# ONNX TensorProto data types -> the operator table's type names.
_TYPE_NAMES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    6: "INT32",
    7: "INT64",
    9: "BOOL",
    10: "FP16",
    11: "DOUBLE",
    16: "BF16",
}
# Operators whose listed types are those of another tensor than input 0.
_CHECKED_INPUT = {"Where": 1}
_TYPED_BY_OUTPUT = {"Constant", "ConstantOfShape", "RandomNormal", "RandomUniform", "EyeLike"}
_REDUCE = {
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
}
# (operator, input index, generations): "`<input>` must be an initializer" in the Restrictions column.
_CONSTANT_INPUTS = (
    ("TopK", 1, ("8.5",)),
    ("Slice", 3, GENERATIONS),
    ("Squeeze", 1, GENERATIONS),
    ("Unsqueeze", 1, GENERATIONS),
    ("CumSum", 1, GENERATIONS),
    ("Pad", 3, ("10",)),
    *((op, 1, ("10",)) for op in sorted(_REDUCE)),
)


@dataclass(frozen=True)
class Finding:
    """One node TensorRT would refuse, and why."""

    graph: str
    node: str
    op: str
    rule: str  # opset | operator | dtype | attribute | qdq
    message: str

    def __str__(self) -> str:
        return f"{self.graph}: {self.node or '(graph)'} ({self.op}): {self.message}"


class _Graph:
    """Types, constants and producers of one ONNX model (after shape inference)."""

    def __init__(self, model) -> None:
        import onnx
        from onnx import numpy_helper

        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - inference is a help here, not a requirement
            pass
        g = model.graph
        self.model = model
        self.types: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for vi in (*g.input, *g.value_info, *g.output):
            t = vi.type.tensor_type
            self.types[vi.name] = t.elem_type
            if t.HasField("shape"):
                self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        self.constants: dict[str, np.ndarray] = {}
        for init in g.initializer:
            self.constants[init.name] = numpy_helper.to_array(init)
            self.types[init.name] = init.data_type
            self.shapes[init.name] = tuple(init.dims)
        for node in g.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                arr = numpy_helper.to_array(node.attribute[0].t)
                self.constants[node.output[0]] = arr
                self.types[node.output[0]] = node.attribute[0].t.data_type
                self.shapes[node.output[0]] = arr.shape
        # Weights: constants, and what a QuantizeLinear makes of them (TensorRT quantizes those at build time).
        self.weights = set(self.constants)
        for node in g.node:
            if node.op_type == "QuantizeLinear" and node.input[0] in self.weights:
                self.weights.add(node.output[0])
                self.shapes.setdefault(node.output[0], self.shapes.get(node.input[0], ()))

    def type_name(self, tensor: str, gen: str) -> str | None:
        code = self.types.get(tensor)
        if not code:
            return None
        name = _TYPE_NAMES.get(code, f"ONNX type {code}")
        return CAST_DOWN[gen].get(name, name)


def _given(node, i: int) -> str | None:
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _check_qdq(node, g: _Graph, gen: str) -> Iterable[str]:
    """Messages for one QuantizeLinear / DequantizeLinear node (empty when TensorRT takes it)."""
    data, scale, zero = _given(node, 0), _given(node, 1), _given(node, 2)
    is_dq = node.op_type == "DequantizeLinear"
    qtype = g.type_name(data, gen) if is_dq else (g.type_name(zero, gen) if zero else "UINT8")
    if qtype != "INT8":
        what = "a quantized bias (INT32); keep biases float" if qtype == "INT32" else f"{qtype} quantization"
        yield f"{what}: TensorRT takes INT8 Q/DQ only (QuantDequantLinearHelper, 'Dequantize' layer)"
    if zero is None:
        if gen != "10":
            yield f"no zero-point input: TensorRT {gen} requires 3 inputs (zero point 0)"
    elif zero in g.constants and np.any(g.constants[zero] != 0):
        yield "asymmetric (non-zero zero point): TensorRT supports symmetric quantization only, zero point must be 0"
    if scale not in g.constants:
        yield "scale is not a constant: TensorRT needs Q/DQ scales known at build time"
        return
    s = g.constants[scale]
    if g.types.get(scale) != 1:
        yield f"scale is {g.type_name(scale, gen)}, not FP32"
    if np.any(s <= 0):
        yield "scale coefficients must all be positive"
    if s.size > 1:
        if data not in g.weights:
            yield "per-channel scale on an activation: TensorRT quantizes activations per tensor only"
        else:
            shape = g.shapes.get(data, ())
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            axis = axis + len(shape) if axis < 0 else axis
            if not 0 <= axis < len(shape) or shape[axis] != s.size:
                yield f"{s.size} scales do not match axis {axis} of the weights {list(shape)}"


def _check_node(node, g: _Graph, gen: str) -> Iterable[tuple[str, str]]:
    """(rule, message) pairs for one node."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        yield "operator", f"custom-domain operator {node.domain}.{op}: TensorRT has no importer (needs a plugin)"
        return
    table = OPERATORS[gen]
    if op not in table or table[op] is None:
        yield "operator", f"no {op} importer in TensorRT {gen} ({SOURCE[gen]} operators.md: {op} | N)"
        return
    if op in ("QuantizeLinear", "DequantizeLinear"):
        for msg in _check_qdq(node, g, gen):
            yield "qdq", msg
        return
    allowed = table[op]
    tensors = [node.output[0]] if op in _TYPED_BY_OUTPUT else [_given(node, _CHECKED_INPUT.get(op, 0))]
    if op == "Cast":
        tensors.append(node.output[0])
    for tensor in tensors:
        name = g.type_name(tensor, gen) if tensor else None
        if name is not None and name not in allowed:
            yield "dtype", f"{name} {tensor!r} is not a type TensorRT {gen} takes here ({', '.join(sorted(allowed))})"
    for rule_op, index, gens in _CONSTANT_INPUTS:
        if op == rule_op and gen in gens:
            tensor = _given(node, index)
            if tensor is not None and tensor not in g.constants:
                yield "attribute", f"input {index} ({tensor!r}) must be an initializer for TensorRT {gen}"
    attrs = {a.name: a for a in node.attribute}
    if gen == "10":
        if op == "ScatterND" and attrs.get("reduction") is not None and attrs["reduction"].s not in (b"", b"none"):
            yield "attribute", "ScatterND `reduction` is not supported"
        if op == "TopK" and "sorted" in attrs and attrs["sorted"].i != 1:
            yield "attribute", "TopK `sorted` must be 1"
        k = _given(node, 1)
        if op == "TopK" and k in g.constants and int(np.max(g.constants[k])) >= 3840:
            yield "attribute", "TopK `K` must be less than 3840"
        if op == "LayerNormalization" and len([o for o in node.output if o]) > 1:
            yield "attribute", "LayerNormalization: only the first output `Y` is supported"
    if op == "MaxPool" and len([o for o in node.output if o]) > 1:
        yield "attribute", "MaxPool `Indices` output is unsupported"


def lint_model(model, trt: str, name: str = "") -> list[Finding]:
    """Every node of an `onnx.ModelProto` that TensorRT `trt` (8.5, 8.6, 10 or a full version) would refuse."""
    gen = generation(trt)
    g = _Graph(model)
    findings = []
    opset = next((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), 0)
    low, high = OPSETS[gen]
    if not low <= opset <= high:
        findings.append(Finding(name, "", "opset", "opset", f"opset {opset}: TensorRT {gen} imports {low}-{high}"))
    for i, node in enumerate(g.model.graph.node):
        for rule, message in _check_node(node, g, gen):
            findings.append(Finding(name, node.name or f"node {i}", node.op_type, rule, message))
    return findings


def lint_file(path: str | Path, trt: str) -> list[Finding]:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises many types for corrupt files
        raise CKDError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    return lint_model(model, trt, Path(path).name)


def summary(findings: list[Finding]) -> str:
    """One line: how many nodes, by rule and operator."""
    by = Counter(f"{f.rule} {f.op}" for f in findings)
    return ", ".join(f"{n} x {k}" for k, n in by.most_common())


def lint_export(manifest, trt: str) -> list[Finding]:
    """Findings over every rung graph of a loaded export/quantize manifest for TensorRT `trt`."""
    findings = []
    for rung in manifest.rungs:
        findings += lint_file(manifest.path(rung), trt)
    return findings


def require_parseable(manifest, generations) -> None:
    """CKDError (first findings and a summary) unless every graph of `manifest` parses on each generation."""
    for gen in generations:
        findings = lint_export(manifest, gen)
        if findings:
            first = "; ".join(str(f) for f in findings[:3])
            raise CKDError(
                f"{manifest.directory}: {len(findings)} node(s) TensorRT {gen} would refuse ({summary(findings)}): "
                f"{first}{' ...' if len(findings) > 3 else ''} (`ckd check-trt {manifest.directory} --trt {gen}` "
                "lists them all)"
            )
