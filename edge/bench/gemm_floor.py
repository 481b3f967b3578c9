"""The model's own matrix products, shape by shape, and the time ONNX Runtime's kernels need for them alone.

`roofline.count_macs` divides the whole model's operations by one GEMM rate measured on a large square-ish
shape. Real layers are smaller (153-320 tokens at keep 0.7), and the precision policy keeps the attention core
in FP32, so `policy_floor` times every distinct product of the graph with the kernel the INT8 graph really runs
(`com.microsoft.QGemm`: u8 x s8 with per-channel weight scales, int32 bias, float output; or an FP32 batched
MatMul for q@k^T / attn@v and the head's output convolutions) and adds them up. Nothing but matrix products
is counted: it is a lower bound on the INT8 graph's time on this machine, not an estimate of it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from ckd.model.config import CKDConfig
from edge.bench.roofline import _best_rate, probe_session
from quantize.cpu_target import host_format


@dataclass(frozen=True)
class Gemm:
    """`count` products of (batch x m x k) @ (batch x k x n), run in `precision` ("int8" or "fp32")."""

    batch: int
    m: int
    k: int
    n: int
    precision: str

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n


def gemm_shapes(cfg: CKDConfig, keep_ratio: float | None = None) -> dict[Gemm, int]:
    """Every matrix product of one forward pass at a keep ratio -> how many times it runs (both branches).

    Precision follows `quantize.policy`: linear layers and head convolutions INT8; q@k^T, attn@v and the
    head's final 1x1 output convolutions FP32. Convolutions appear as their im2col GEMMs.
    """
    c, nt, d = cfg.embed_dim, cfg.num_template_tokens, cfg.embed_dim // cfg.num_heads
    hidden, heads = int(cfg.embed_dim * cfg.mlp_ratio), cfg.num_heads
    kept = dict(zip(cfg.ce_loc, cfg.kept_tokens(keep_ratio), strict=True))
    out: collections.Counter[Gemm] = collections.Counter()
    patch = 3 * cfg.patch_size**2
    ns = cfg.num_search_tokens
    branch = collections.Counter([Gemm(1, nt, patch, c, "int8"), Gemm(1, ns, patch, c, "int8")])
    for i in range(cfg.depth):
        n = nt + ns
        branch.update([Gemm(1, n, c, 3 * c, "int8"), Gemm(1, n, c, c, "int8")])
        branch.update([Gemm(heads, n, d, n, "fp32"), Gemm(heads, n, n, d, "fp32")])
        ns = kept.get(i, ns)
        branch.update([Gemm(1, nt + ns, c, hidden, "int8"), Gemm(1, nt + ns, hidden, c, "int8")])
    for g, count in branch.items():
        out[g] += 2 * count
    f2, hc = cfg.feat_size**2, cfg.head_channels
    widths = [2 * c, hc, hc // 2, hc // 4, hc // 8]
    for towers_out in (1, 2, 2):  # ctr, offset, size towers
        for j in range(4):
            out[Gemm(1, f2, 9 * widths[j], widths[j + 1], "int8")] += 1
        out[Gemm(1, f2, widths[4], towers_out, "fp32")] += 1
    return dict(out)


def _session(g: Gemm, threads: int | None):
    """An ONNX Runtime session of one product with the kernel the quantized graph uses for it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if g.precision == "int8":
        w = host_format().weight_max
        inits = [
            numpy_helper.from_array(rng.integers(-w, w + 1, (g.k, g.n), dtype=np.int8), "B"),
            numpy_helper.from_array(np.array(0.02, np.float32), "a_s"),
            numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
            numpy_helper.from_array(rng.uniform(0.001, 0.01, g.n).astype(np.float32), "b_s"),
            numpy_helper.from_array(np.zeros(g.n, np.int8), "b_zp"),
            numpy_helper.from_array(rng.integers(-1000, 1000, g.n, dtype=np.int32), "bias"),
        ]
        names = ["A", "a_s", "a_zp", "B", "b_s", "b_zp", "bias"]
        node = helper.make_node("QGemm", names, ["Y"], domain="com.microsoft")
        a_type, y_type, shape_b = TensorProto.UINT8, TensorProto.FLOAT, None
    else:
        inits = []
        node, a_type, y_type = helper.make_node("MatMul", ["A", "B"], ["Y"]), TensorProto.FLOAT, TensorProto.FLOAT
        shape_b = [g.batch, g.k, g.n]
    a_shape = [g.m, g.k] if g.precision == "int8" else [g.batch, g.m, g.k]  # QGemm is 2-D (batch 1)
    inputs = [helper.make_tensor_value_info("A", a_type, a_shape)]
    if shape_b:  # both operands are activations (q@k^T, attn@v): B is an input too
        inputs.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, shape_b))
    graph = helper.make_graph([node], "gemm", inputs, [helper.make_tensor_value_info("Y", y_type, None)], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    sess = probe_session(helper.make_model(graph, opset_imports=opsets), threads)
    if g.precision == "int8":
        feeds = {"A": rng.integers(0, 256, a_shape, dtype=np.uint8)}
    else:
        feeds = {"A": rng.standard_normal((g.batch, g.m, g.k), dtype=np.float32)}
        feeds["B"] = rng.standard_normal((g.batch, g.k, g.n), dtype=np.float32)
    return sess, feeds


def _bound(sess, feeds: dict[str, np.ndarray], g: Gemm):
    """A run of `sess` through IOBinding into a preallocated output (as the tracker's backend runs graphs): a
    fresh multi-megabyte output per call would add allocation and page faults to a sub-millisecond product.
    Returns the run callable and the output array it fills."""
    out = np.empty((g.m, g.n) if g.precision == "int8" else (g.batch, g.m, g.n), np.float32)
    binding = sess.io_binding()
    for name, arr in feeds.items():
        binding.bind_cpu_input(name, arr)
    binding.bind_output("Y", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    return (lambda: sess.run_with_iobinding(binding)), out


def policy_floor(
    cfg: CKDConfig, keep_ratio: float | None = None, threads: int | None = None, seconds: float = 0.2
) -> dict[str, float]:
    """Milliseconds the model's products need on their own (each shape at its measured best rate), by precision."""
    ms = {"int8": 0.0, "fp32": 0.0}
    for g, count in gemm_shapes(cfg, keep_ratio).items():
        if g.precision == "int8" and g.batch != 1:
            raise ValueError(f"INT8 products are 2-D here, got batch {g.batch}")
        run, _ = _bound(*_session(g, threads), g)
        gops = _best_rate(run, 2.0 * g.macs, seconds)
        ms[g.precision] += count * 2.0 * g.macs / gops / 1e6
    return {"int8_ms": ms["int8"], "fp32_ms": ms["fp32"], "total_ms": ms["int8"] + ms["fp32"]}
