"""INT8 format per CPU: detection from /proc/cpuinfo flags, an integer product that saturates x86 kernels without
VNNI computed exactly through the format the kit picks here, and the load-time refusal of a graph made for VNNI on
a CPU without it (faked flags)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ckd.errors import CKDError
from ckd_cli.main import main
from edge.backends.onnxruntime import OrtBackend
from quantize import cpu_target
from quantize.cpu_target import FORMAT_FOR_TARGET, FORMATS, host_target, target_from_cpuinfo
from quantize.policy import TIERS
from quantize.ptq import quantize_qdq

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16\n"
ALDER_LAKE = "flags\t\t: fpu sse4_2 avx avx2 fma avx_vnni\n"
HASWELL = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma f16c\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n"
SKYLAKE_X = "flags\t\t: fpu avx avx2 fma avx512f avx512bw avx512vl\n"
ORIN = "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp\n"


def test_cpu_target_from_flags():
    assert target_from_cpuinfo(ZEN4) == "vnni" and target_from_cpuinfo(ALDER_LAKE) == "vnni"
    assert target_from_cpuinfo(HASWELL) == "avx2"
    assert target_from_cpuinfo(SKYLAKE_X) == "avx2"  # AVX-512 without VNNI still uses VPMADDUBSW
    assert target_from_cpuinfo(ORIN) == "arm" and target_from_cpuinfo("", "aarch64") == "arm"
    assert FORMAT_FOR_TARGET == {"vnni": "u8s8", "avx2": "u8s8-w7", "arm": "u8s8"}
    for target, name in FORMAT_FOR_TARGET.items():
        assert target in FORMATS[name].exact_on


class _Reader:
    """ONNX Runtime calibration reader over a list of feeds."""

    def __init__(self, feeds):
        self.feeds, self.it = feeds, iter(feeds)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        self.it = iter(self.feeds)


def _saturation_prone_gemm(tmp_path, fmt: str):
    """Quantize Y = X @ W^T + b (8x16 by 4x16, the issue's 8x16x4 product) with the kit's quantizer in format `fmt`.
    X is +-1 (calibrated range [-1, 1]: uint8 0 or 255 around zero point 128), W is +-1 (per-channel full-range
    weights +-127): adjacent products of equal sign add up to 2 x 255 x 127 = 64770, past 16 bits."""
    rng = np.random.default_rng(0)
    w = rng.choice([-1.0, 1.0], (4, 16)).astype(np.float32)
    x = np.where(rng.random((8, 16)) < 0.5, -1.0, 1.0).astype(np.float32)
    x[0], x[1] = 1.0, -1.0  # calibration sees the whole range
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.full(4, 0.5, np.float32), "b")]
    node = helper.make_node("Gemm", ["X", "W", "b"], ["Y"], name="/m/fc/Gemm", transB=1)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [8, 16])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [8, 4])],
        inits,
    )
    src, dst = tmp_path / "fp32.onnx", tmp_path / f"{fmt}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    quantize_qdq(src, dst, _Reader([{"X": x}]), fmt, TIERS["conservative"], "minmax")
    return x, dst


def _exact_product(x: np.ndarray, path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The quantized graph's own integers and the exact float result they stand for (float64 from int64 products)."""
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "X")
    sx, zx = float(init[q.input[1]]), int(init[q.input[2]])
    dq = {
        init[n.input[0]].dtype.name: n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in init
    }
    wq, sw = init[dq["int8"].input[0]].astype(np.int64), init[dq["int8"].input[1]].astype(np.float64)
    bq = init[dq["int32"].input[0]].astype(np.int64)
    xq = np.clip(np.round(x / sx) + zx, 0, 255).astype(np.int64)
    exact = ((xq - zx) @ wq.T + bq) * (sx * sw)
    return exact, xq, wq


def test_picked_format_computes_a_saturating_product_exactly(tmp_path):
    """Passes on VNNI and AVX2 alike: every format the table calls exact on this CPU is run and checked against the
    exact integer product. On x86 without VNNI the full-range format gives wrong outputs, so picking it there fails."""
    here = host_target()
    picked = FORMAT_FOR_TARGET[here]
    checked = []
    for name in ("u8s8", "u8s8-w7"):
        fmt = FORMATS[name]
        x, path = _saturation_prone_gemm(tmp_path, name)
        exact, xq, wq = _exact_product(x, path)
        assert xq.max() == 255 and xq.min() <= 1 and np.abs(wq).max() == fmt.weight_max
        pairs = xq[:, None, 0::2] * wq[None, :, 0::2] + xq[:, None, 1::2] * wq[None, :, 1::2]
        assert (np.abs(pairs).max() > 32767) == (not fmt.reduce_range)  # 16-bit pair sums overflow at full range
        if here not in fmt.exact_on:
            continue
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        y = sess.run(None, {"X": x})[0]
        np.testing.assert_allclose(y, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())
        checked.append(name)
    assert picked in checked


def _fake_cpu(monkeypatch, tmp_path, text: str) -> None:
    fake = tmp_path / "cpuinfo"
    fake.write_text(text)
    monkeypatch.setattr(cpu_target, "CPUINFO", fake)


def _max_weight(path) -> int:
    graph = onnx.load(str(path))
    return max(int(np.abs(numpy_helper.to_array(t)).max()) for t in graph.graph.initializer if t.data_type == 3)


def test_vnni_graph_is_refused_without_vnni(nano_calibrated, tmp_path, monkeypatch, capsys):
    nano = nano_calibrated
    base = ["quantize", "--onnx", str(nano / "fp32"), "--calib", str(nano / "calib")]
    assert main([*base, "--out", str(tmp_path / "vnni"), "--cpu-target", "vnni"]) == 0
    assert main([*base, "--out", str(tmp_path / "avx2"), "--cpu-target", "avx2"]) == 0
    assert "tier conservative, u8s8-w7 for --cpu-target avx2" in capsys.readouterr().out
    rec = json.loads((tmp_path / "vnni" / "manifest.json").read_text())["calibration"]
    assert (rec["cpu_target"], rec["int8_format"], rec["tier"]) == ("vnni", "u8s8", "conservative")
    assert _max_weight(tmp_path / "vnni" / "ckd_k1.00_int8.onnx") == 127
    assert _max_weight(tmp_path / "avx2" / "ckd_k1.00_int8.onnx") == 64

    _fake_cpu(monkeypatch, tmp_path, HASWELL)
    with pytest.raises(CKDError) as err:
        OrtBackend(tmp_path / "vnni")
    msg = str(err.value)
    assert "\n" not in msg and "quantized for --cpu-target vnni" in msg
    assert msg.endswith("quantize them again with `ckd quantize --cpu-target avx2`") and "no VNNI" in msg
    assert OrtBackend(tmp_path / "avx2").precision == "int8"  # 7-bit weights are exact there
    for text in (ZEN4, ORIN):
        _fake_cpu(monkeypatch, tmp_path, text)
        assert OrtBackend(tmp_path / "vnni").precision == "int8"
    legacy = json.loads((tmp_path / "vnni" / "manifest.json").read_text())
    del legacy["calibration"]["int8_format"]  # written before formats were recorded: full-range U8S8
    (tmp_path / "vnni" / "manifest.json").write_text(json.dumps(legacy))
    _fake_cpu(monkeypatch, tmp_path, SKYLAKE_X)
    with pytest.raises(CKDError, match="--cpu-target avx2"):
        OrtBackend(tmp_path / "vnni")


def test_tensorrt_format_graphs_on_a_cpu_without_vnni_name_the_folder_not_a_cpu_target(
    nano_calibrated, tmp_path, monkeypatch, capsys
):
    """`ckd quantize --format trt --gate` on x86 without VNNI: the gate's ONNX Runtime check refuses the S8S8 graphs
    naming the output folder (not the pending manifest's repr) and without the `--cpu-target` advice, which cannot
    change that format."""
    import torch
    from toy_export import toy_export

    from ckd.model.config import preset
    from ckd.model.network import CKDNet
    from edge.export import export_rungs
    from edge.int8 import fidelity_many, quantize_export

    torch.manual_seed(0)  # the calibration set's model, exported for TensorRT this time
    fp32, out = tmp_path / "fp32", tmp_path / "trt"
    export_rungs(CKDNet(preset("nano")).eval(), fp32, (1.0,), "random:nano:calibrated", verify=False, tensorrt=["10"])
    _fake_cpu(monkeypatch, tmp_path, HASWELL)
    argv = ["quantize", "--onnx", str(fp32), "--calib", str(nano_calibrated / "calib"), "--out", str(out)]
    argv += ["--format", "trt", "--gate", "--eval-sequences", "1", "--eval-length", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"ckd quantize: error: {out / '.tiers' / 'conservative'}: TensorRT-format INT8 graphs")
    assert "Manifest(" not in err and "--cpu-target does not change that format" in err
    assert "quantize them again" not in err and "`ckd build` gates" in err
    pending = quantize_export(fp32, nano_calibrated / "calib", out / "pending", fmt="trt", gate=True)
    with pytest.raises(CKDError, match=f"^{out / 'pending'}: TensorRT-format"):
        OrtBackend(pending)
    _fake_cpu(monkeypatch, tmp_path, ZEN4)
    assert OrtBackend(pending).precision == "int8"
    other = toy_export(tmp_path / "other", ratios=(0.7,))  # FP32 graphs without the 1.00 rung
    with pytest.raises(CKDError, match=f"to compare {out / 'pending'} with$"):
        fidelity_many(other.directory, {"int8": pending}, [])
