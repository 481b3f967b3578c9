"""Roofline figures: the model's multiply-accumulates per rung (analytic) and this machine's measured GEMM ceilings.

MAC count (batch 1, both branches and the head) follows the convention of `thop.profile`, which is how the
release's figures were made: Linear/Conv count in_features x output elements (no bias), LayerNorm/BatchNorm
count 4 x elements (thop's `count_normalization` with an affine), and the attention matmuls (`q @ k^T`,
`attn @ v`) are *not* counted because they are tensor operators, not modules. With that convention the base
model gives 57.802 GMACs at keep 1.0 and 42.735 at 0.7, the published numbers. For the roofline the kit uses
`gemm_macs`: every matrix product including the attention matmuls (61.526 / 44.982 for base), no norms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ckd.model.config import CKDConfig
from quantize.cpu_target import host_format


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass by kind."""

    linear: int  # patch embedding, qkv, proj, MLP (both branches)
    attention: int  # q @ k^T and attn @ v (both branches)
    norms: int  # LayerNorm + BatchNorm, thop convention (4 x elements)
    head: int  # head convolutions

    @property
    def thop_macs(self) -> int:
        """The published convention (no attention matmuls)."""
        return self.linear + self.norms + self.head

    @property
    def gemm_macs(self) -> int:
        """Every matrix product: what a GEMM roofline should divide by."""
        return self.linear + self.attention + self.head


def count_macs(cfg: CKDConfig, keep_ratio: float | list[float] | None = None) -> MacCount:
    """Analytic MACs at a keep ratio, with the search tokens after each CE layer from `cfg.kept_tokens`.

    Elimination happens between a block's attention and its MLP, so a CE block's attention sees the tokens
    before elimination and its MLP the tokens after.
    """
    c, nt, hidden = cfg.embed_dim, cfg.num_template_tokens, int(cfg.embed_dim * cfg.mlp_ratio)
    kept = dict(zip(cfg.ce_loc, cfg.kept_tokens(keep_ratio), strict=True))
    patch = 3 * cfg.patch_size**2
    linear = (nt + cfg.num_search_tokens) * patch * c
    attention = norms = 0
    ns = cfg.num_search_tokens
    for i in range(cfg.depth):
        n = nt + ns
        linear += n * c * 3 * c + n * c * c
        attention += 2 * n * n * c
        norms += 4 * n * c
        ns = kept.get(i, ns)
        n = nt + ns
        linear += 2 * n * c * hidden
        norms += 4 * n * c
    norms += 4 * (nt + ns) * c  # final norm
    f2 = cfg.feat_size**2
    hc = cfg.head_channels
    widths = [2 * c, hc, hc // 2, hc // 4, hc // 8]
    head = head_norms = 0
    for out in (1, 2, 2):  # ctr, offset, size towers
        for j in range(4):
            head += 9 * widths[j] * widths[j + 1] * f2
            head_norms += 4 * widths[j + 1] * f2
        head += widths[4] * out * f2
    # The two students do the same work; the head runs once.
    return MacCount(linear=2 * linear, attention=2 * attention, norms=2 * norms + head_norms, head=head)


def _best_rate(run, flops: float, seconds: float) -> float:
    """Best GFLOP/s (or GOP/s) of repeated `run()` calls within a time budget (after one warm-up call)."""
    run()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            return flops / best / 1e9


def torch_fp32_gflops(m: int = 512, k: int = 768, n: int = 3072, seconds: float = 0.5, threads: int | None = None):
    """Measured FP32 GEMM rate of torch (MKL/oneDNN/OpenBLAS) on a ViT-like shape, GFLOP/s."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    return _best_rate(lambda: torch.matmul(a, b, out=out), 2.0 * m * k * n, seconds)


def probe_session(model, threads: int | None):
    """An ONNX Runtime CPU session of a one-node probe graph (`onnx.ModelProto`) with `threads` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _ort_matmul_session(m: int, k: int, n: int, int8: bool, threads: int | None, weights: str | None = None):
    """A one-product session: FP32 MatMul, or MatMulInteger with u8 activations (zero point 128) and `weights`
    "u8s8" (full-range int8), "u8s8-w7" (|w| <= 64) or "u8u8" (uint8, zero point 128); default this CPU's format."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        weights = weights or host_format().name
        if weights == "u8u8":
            b = numpy_helper.from_array(rng.integers(0, 256, (k, n), dtype=np.uint8), "B")
            bzp = numpy_helper.from_array(np.array(128, np.uint8), "b_zp")
        else:
            w = {"u8s8": 127, "u8s8-w7": 64}[weights]
            b = numpy_helper.from_array(rng.integers(-w, w + 1, (k, n), dtype=np.int8), "B")
            bzp = numpy_helper.from_array(np.array(0, np.int8), "b_zp")
        azp = numpy_helper.from_array(np.array(128, np.uint8), "a_zp")
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zp", "b_zp"], ["Y"])
        a_type, y_type, inits = TensorProto.UINT8, TensorProto.INT32, [b, azp, bzp]
    else:
        b = numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type, inits = TensorProto.FLOAT, TensorProto.FLOAT, [b]
    graph = helper.make_graph(
        [node],
        "gemm",
        [helper.make_tensor_value_info("A", a_type, [m, k])],
        [helper.make_tensor_value_info("Y", y_type, [m, n])],
        inits,
    )
    sess = probe_session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), threads)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8) if int8 else rng.standard_normal((m, k), dtype=np.float32)
    return sess, a


def ort_gops(
    int8: bool,
    m: int = 512,
    k: int = 768,
    n: int = 3072,
    seconds: float = 0.5,
    threads: int | None = None,
    weights: str | None = None,
) -> float:
    """Measured ONNX Runtime GEMM rate (MatMulInteger -> s32 with `weights`, default this CPU's INT8 format, or FP32
    MatMul), GOP/s."""
    sess, a = _ort_matmul_session(m, k, n, int8, threads, weights)
    return _best_rate(lambda: sess.run(None, {"A": a}), 2.0 * m * k * n, seconds)


def int8_format_gops(
    formats=("u8s8", "u8s8-w7", "u8u8"), m: int = 512, k: int = 768, n: int = 3072, seconds: float = 1.0, threads=None
) -> dict[str, float]:
    """Best MatMulInteger rate (GOP/s) of each weight format, the formats' runs interleaved call by call within
    the time budget so that load on a shared machine reaches each alike."""
    runs = {}
    for w in formats:
        sess, a = _ort_matmul_session(m, k, n, True, threads, w)
        runs[w] = lambda s=sess, x=a: s.run(None, {"A": x})
        runs[w]()  # warm-up
    best = dict.fromkeys(formats, float("inf"))
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or not all(t < float("inf") for t in best.values()):
        for w, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[w] = min(best[w], time.perf_counter() - t0)
    return {w: 2.0 * m * k * n / t / 1e9 for w, t in best.items()}


def gemm_ceilings(seconds: float = 0.5, threads: int | None = None) -> dict[str, float]:
    """This machine's measured GEMM ceilings in GOP/s: FP32 (best of torch and ORT) and INT8 (ORT)."""
    torch_fp32 = torch_fp32_gflops(seconds=seconds, threads=threads)
    ort_fp32 = ort_gops(False, seconds=seconds, threads=threads)
    int8 = ort_gops(True, seconds=seconds, threads=threads)
    return {
        "fp32_gops": max(torch_fp32, ort_fp32),
        "int8_gops": int8,
        "fp32_torch_gops": torch_fp32,
        "fp32_ort_gops": ort_fp32,
        "shape_mkn": [512, 768, 3072],
    }


def best_ceilings(*probes: dict[str, float]) -> dict[str, float]:
    """Combine probes taken at different times (before and after the rows): the best rate seen for each figure.

    On a shared machine a probe taken while another job runs is low; the best one is the machine's ceiling.
    """
    out: dict = {}
    for probe in probes:
        for k, v in probe.items():
            out[k] = max(out[k], v) if isinstance(v, float) and k in out else v
    return out
