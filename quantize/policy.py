"""The INT8 precision policy for the CKD ViTs: which nodes stay in floating point, as a list of rules.

Only weight-bearing GEMMs (`QUANTIZE_OPS`: the patch-embedding and head convolutions, the qkv / proj /
fc1 / fc2 linear layers, exported as `Gemm` with their bias) become INT8 with per-channel weights. The
linear layers' outputs are not re-quantized (`FLOAT_OUTPUT_OPS`): ONNX Runtime then runs product, bias and
dequantization as one `QGemm` kernel. Everything that follows is kept float (FP32 in ONNX Runtime,
FP16/FP32 in TensorRT), each rule naming its reason:

- LayerNorm: a reduction over channels with outlier channels; INT8 ranges clip them.
- Softmax and the attention core (`q @ k^T`, `attn @ v`): activation x activation products with
  heavy-tailed logits; the MCE token ranking reads these probabilities directly.
- GELU (exported as Erf + Mul/Add/Div under `mlp/act`): its negative tail is lost at 8 bits.
- Head outputs: the final 1x1 convs of the score / offset / size towers and the decode after them;
  the tracker reads these maps, so their small dynamic range must not be quantized.

Node names follow the TorchScript exporter's scopes (`/m/attn_3/MatMul_1`, `/m/box_head/conv5_ctr/Conv`).
`excluded_nodes` applies the rules to a graph; `check_policy` verifies a quantized graph obeys them.

Precision tiers (`TIERS`; `TIER_NAMES`, most INT8 first) relax these rules step by step: `conservative` is
the policy above; `balanced` also runs the attention core (q@k^T, attn@v) as INT8 activation x activation
products (U8U8: exact on every CPU); `aggressive` also quantizes Softmax, which ONNX Runtime's CPU provider then
runs as its integer `QLinearSoftmax`. GELU stays float in every tier: ONNX Runtime has no integer GELU kernel on
CPU, so quantizing around it would only add Q/DQ nodes. `ckd quantize --gate` times every tier on the machine and
keeps the fastest whose rungs pass the fidelity gate (`edge/int8_tiers.py`): more INT8 is not always faster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ckd.errors import CKDError

QUANTIZE_OPS = ("Conv", "MatMul", "Gemm")
FLOAT_OUTPUT_OPS = ("Gemm",)


@dataclass(frozen=True)
class Rule:
    """Keep float every node of `op_type` (any when None) whose name matches `name` (any when None)."""

    label: str
    op_type: str | None
    name: str | None
    why: str

    def matches(self, op_type: str, node_name: str) -> bool:
        if self.op_type is not None and op_type != self.op_type:
            return False
        return self.name is None or re.search(self.name, node_name) is not None


KEEP_FLOAT: tuple[Rule, ...] = (
    Rule("layernorm", "LayerNormalization", None, "channel reduction with outlier channels"),
    Rule("softmax", "Softmax", None, "attention probabilities feed MCE token ranking"),
    Rule("attention-core", "MatMul", r"/attn(_\d+)?/MatMul(_\d+)?$", "q@k^T and attn@v: activation x activation"),
    Rule("gelu", None, r"/mlp/act(_\d+)?/", "Erf-based GELU loses its negative tail at 8 bits"),
    Rule("head-output", "Conv", r"/box_head/conv5_(ctr|offset|size)/", "score/offset/size maps read by the tracker"),
)


@dataclass(frozen=True)
class Tier:
    """A named precision policy: the op types that may run INT8, the rules keeping nodes of them float, and the
    op types whose outputs stay float (the INT8 product dequantizes into its float output)."""

    name: str
    rules: tuple[Rule, ...]
    ops: tuple[str, ...]
    float_output_ops: tuple[str, ...]
    summary: str


def _without(*labels: str) -> tuple[Rule, ...]:
    return tuple(r for r in KEEP_FLOAT if r.label not in labels)


TIERS: dict[str, Tier] = {
    t.name: t
    for t in (
        Tier("conservative", KEEP_FLOAT, QUANTIZE_OPS, FLOAT_OUTPUT_OPS, "INT8 linear layers and convolutions"),
        Tier(
            "balanced",
            _without("attention-core"),
            QUANTIZE_OPS,
            FLOAT_OUTPUT_OPS + ("MatMul",),
            "also the attention core (q@k^T, attn@v) INT8",
        ),
        Tier(
            "aggressive",
            _without("attention-core", "softmax"),
            QUANTIZE_OPS + ("Softmax",),
            FLOAT_OUTPUT_OPS,
            "also Softmax as QLinearSoftmax, attention core INT8 in and out",
        ),
    )
}
TIER_NAMES = ("aggressive", "balanced", "conservative")


def tier(name: str) -> Tier:
    """The tier called `name`; CKDError naming the choices otherwise."""
    if name not in TIERS:
        raise CKDError(f"unknown precision tier {name!r}; choose from {', '.join(TIER_NAMES)}")
    return TIERS[name]


def keep_float(op_type: str, node_name: str, rules: Iterable[Rule] = KEEP_FLOAT) -> Rule | None:
    """The first rule keeping this node float, or None if the policy allows INT8."""
    return next((r for r in rules if r.matches(op_type, node_name)), None)


def excluded_nodes(graph, rules: Iterable[Rule] = KEEP_FLOAT, ops: Iterable[str] = QUANTIZE_OPS) -> list[str]:
    """Names of the quantizable nodes (`ops`) of an `onnx.ModelProto` that the rules keep float."""
    rules, ops = tuple(rules), tuple(ops)
    return [n.name for n in graph.graph.node if n.op_type in ops and keep_float(n.op_type, n.name, rules)]


def quantized_nodes(graph) -> set[str]:
    """Names of the compute nodes of a QDQ graph whose inputs come through DequantizeLinear (they run INT8)."""
    dq_out = {o for n in graph.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {
        n.name
        for n in graph.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_out for i in n.input)
    }


def check_policy(graph, rules: Iterable[Rule] = KEEP_FLOAT) -> dict[str, list[str]]:
    """Audit a quantized graph: {"int8": nodes fed by DQ, "violations": policy nodes that were quantized}."""
    rules = tuple(rules)
    q = quantized_nodes(graph)
    ops = {n.name: n.op_type for n in graph.graph.node}
    violations = sorted(name for name in q if keep_float(ops[name], name, rules))
    return {"int8": sorted(q), "violations": violations}
