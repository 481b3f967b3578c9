"""Offline TensorRT lint: the operator table against its source, each rule on small graphs, the graphs the kit
used to write failing for the four reasons of issue 13, fresh demo exports / TensorRT INT8 graphs clean for
TensorRT 8.5, 8.6 and 10 (through the CLI, as a user runs it), and export / quantize / flash writing nothing
TensorRT would refuse."""

from __future__ import annotations

import re
import shutil
import warnings
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import ckd.model.network as network
from ckd.errors import CKDError
from ckd.model.checkpoint import load_model
from ckd_cli.main import main
from edge.export import _rung_module, decompose_layernorm, export_rungs, random_inputs
from edge.manifest import Manifest
from edge.trt.lint import lint_export, lint_model
from edge.trt.onnx_support import GENERATIONS, OPERATORS
from edge.trt.targets import LN_FP32_MARKER, graphs_for, parse_generations, split_targets


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _rules(findings):
    return sorted((f.op, f.rule) for f in findings)


@pytest.mark.parametrize(("gen", "source"), [("8.5", "8.5-GA"), ("8.6", "8.6-GA"), ("10", "10.1-GA")])
def test_table_is_the_onnx_tensorrt_operator_doc(shared_dir, gen, source):
    doc = shared_dir / "reference" / "onnx-tensorrt" / f"operators-{source}.md"
    rows = [ln for ln in doc.read_text().splitlines() if re.match(r"\| [A-Z]", ln) and not ln.startswith("| Operator ")]
    table = OPERATORS[gen]
    assert len(rows) == len(table)
    for row in rows:
        op, supported, *rest = (c.strip() for c in row.strip().strip("|").split("|"))
        types = set(re.findall(r"[A-Z0-9]+", rest[0] if rest else "")) - {"INF64"}
        assert (table[op] is None) == (supported == "N"), op
        if supported == "Y":
            assert types <= table[op], op


def test_rules_on_small_graphs():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    ln = _model(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], "ln")],
        [x],
        [y],
        [
            onnx.numpy_helper.from_array(np.ones(8, np.float32), "g"),
            onnx.numpy_helper.from_array(np.zeros(8, np.float32), "b"),
        ],
    )
    assert _rules(lint_model(ln, "8.5")) == [("LayerNormalization", "operator")]
    assert lint_model(ln, "8.6") == [] and lint_model(ln, "10.3.0") == []
    # TopK: K must be an initializer on 8.5 only
    k = helper.make_tensor_value_info("k", TensorProto.INT64, [1])
    idx = helper.make_tensor_value_info("i", TensorProto.INT64, [1, 3])
    topk = _model([helper.make_node("TopK", ["x", "k"], ["y", "i"], "topk", axis=1)], [x, k], [y, idx])
    assert _rules(lint_model(topk, "8.5")) == [("TopK", "attribute")]
    assert lint_model(topk, "8.6") == []
    # BOOL data into ScatterND: no version takes it; INT64 Where is cast down on 8.x
    b = helper.make_tensor_value_info("b", TensorProto.BOOL, [4])
    scatter = _model(
        [helper.make_node("ScatterND", ["b", "ix", "u"], ["o"], "scatter")],
        [b],
        [helper.make_tensor_value_info("o", TensorProto.BOOL, [4])],
        [helper.make_tensor("ix", TensorProto.INT64, [1, 1], [2]), helper.make_tensor("u", TensorProto.BOOL, [1], [1])],
    )
    for gen in GENERATIONS:
        (f,) = lint_model(scatter, gen)
        assert (f.op, f.rule) == ("ScatterND", "dtype") and "BOOL" in f.message
    # custom domain and a too-new opset
    custom = _model([helper.make_node("Gelu", ["x"], ["y"], "gelu", domain="com.microsoft")], [x], [y])
    custom.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert _rules(lint_model(custom, "10")) == [("Gelu", "operator")]
    relu18 = _model([helper.make_node("Relu", ["x"], ["y"], "relu")], [x], [y], opset=18)
    assert _rules(lint_model(relu18, "8.6")) == [("opset", "opset")] and lint_model(relu18, "10") == []


def _qdq(zero_dtype=TensorProto.INT8, zero=0, scale=(0.1,), with_zero=True, weight=False):
    shape = [4, 8]
    data = "w" if weight else "x"
    inits = [onnx.numpy_helper.from_array(np.asarray(scale, np.float32), "s")]
    if with_zero:
        zp = np.full(len(scale), zero, np.int8 if zero_dtype == TensorProto.INT8 else np.uint8)
        inits.append(onnx.numpy_helper.from_array(zp.reshape(np.shape(scale)), "z"))
    if weight:
        inits.append(onnx.numpy_helper.from_array(np.ones(shape, np.float32), "w"))
    q_in = ["w" if weight else "x", "s"] + (["z"] if with_zero else [])
    nodes = [
        helper.make_node("QuantizeLinear", q_in, ["q"], "q", axis=0),
        helper.make_node("DequantizeLinear", ["q", "s"] + (["z"] if with_zero else []), ["y"], "dq", axis=0),
    ]
    ins = [] if weight else [helper.make_tensor_value_info(data, TensorProto.FLOAT, shape)]
    return _model(nodes, ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)


def test_qdq_rules():
    assert lint_model(_qdq(), "8.5") == []
    msgs = {f.message for f in lint_model(_qdq(TensorProto.UINT8, 128), "8.6")}
    assert any(m.startswith("UINT8 quantization") for m in msgs) and any("asymmetric" in m for m in msgs)
    assert any("zero point must be 0" in f.message for f in lint_model(_qdq(zero=3), "10"))
    no_zero = _qdq(with_zero=False)  # ONNX: a QuantizeLinear without zero point makes UINT8
    assert any("requires 3 inputs" in f.message for f in lint_model(no_zero, "8.5"))
    assert {(f.op, f.message.split(":")[0]) for f in lint_model(no_zero, "10")} == {
        ("QuantizeLinear", "UINT8 quantization"),
        ("DequantizeLinear", "UINT8 quantization"),
    }
    assert any("positive" in f.message for f in lint_model(_qdq(scale=(-0.1,)), "8.6"))
    per_channel = (0.1, 0.2, 0.3, 0.4)
    assert any("per tensor only" in f.message for f in lint_model(_qdq(scale=per_channel), "10"))
    assert lint_model(_qdq(scale=per_channel, weight=True), "10") == []
    assert any("do not match axis" in f.message for f in lint_model(_qdq(scale=(0.1,) * 8, weight=True), "10"))


def test_decomposed_layernorm_matches_the_operator():
    rng = np.random.default_rng(0)
    gain, bias = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 16])
    inits = [onnx.numpy_helper.from_array(gain, "g"), onnx.numpy_helper.from_array(bias, "b")]
    fused = _model(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], "/m/norm", epsilon=1e-6)], [x], [y], inits
    )
    split = _model(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], "/m/norm", epsilon=1e-6)], [x], [y], inits
    )
    assert decompose_layernorm(split) == 1
    onnx.checker.check_model(split)
    assert all(LN_FP32_MARKER in n.name for n in split.graph.node)
    feed = {"x": (rng.standard_normal((2, 5, 16)) * 30).astype(np.float32)}
    a, b = (ort.InferenceSession(m.SerializeToString()).run(None, feed)[0] for m in (fused, split))
    np.testing.assert_allclose(b, a, atol=2e-5)
    assert lint_model(split, "8.5") == []


def test_targets():
    assert parse_generations("all") == GENERATIONS and parse_generations("10.3.0,8.5.2") == ("8.5", "10")
    assert split_targets(GENERATIONS) == (("8.6", "10"), ("8.5",))
    assert split_targets(("8.5",)) == (("8.5",), ()) and split_targets(()) == ((), ())
    with pytest.raises(CKDError, match="TensorRT 8.2.1: the kit knows TensorRT 8.5, 8.6, 10"):
        parse_generations("8.2.1")


def _old_export(model, keep_ratio, path, monkeypatch):
    """A rung as the kit exported it before issue 13: in-place BOOL mask, no constant folding."""

    def inplace_mask(cfg, batch=1, device=None):
        side = cfg.template_size // cfg.patch_size
        c = side // 2 - 1 if side % 2 == 0 else side // 2
        mask = torch.zeros(batch, side, side, dtype=torch.bool, device=device)
        mask[:, c, c] = True
        return mask.flatten(1)

    monkeypatch.setattr(network, "center_template_mask", inplace_mask)
    dummy = tuple(torch.from_numpy(v) for v in random_inputs(model.cfg).values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_rung_module(model, keep_ratio), dummy, str(path), dynamo=False, opset_version=17)
    return onnx.load(str(path))


def test_graphs_before_issue_13_fail_for_its_four_reasons(demo_graphs, tmp_path, monkeypatch):
    # 1. LayerNormalization on TensorRT 8.5
    ln = lint_export(Manifest.load(demo_graphs / "fp32"), "8.5")
    assert ln and {(f.op, f.rule) for f in ln} == {("LayerNormalization", "operator")}
    # 2 + 3. ONNX Runtime's CPU INT8: asymmetric UINT8 activations, INT32 bias DequantizeLinear (every version)
    for gen in ("8.6", "10"):
        messages = {f.message.split(":")[0] for f in lint_export(Manifest.load(demo_graphs / "ort"), gen)}
        assert {"UINT8 quantization", "a quantized bias (INT32); keep biases float"} <= messages
        assert "asymmetric (non-zero zero point)" in messages
    # 4. the BOOL ScatterND of `mask[:, c, c] = True`
    old = _old_export(load_model(None), 0.7, tmp_path / "old.onnx", monkeypatch)
    for gen in GENERATIONS:
        scatter = [f for f in lint_model(old, gen) if f.op == "ScatterND"]
        assert len(scatter) == 1 and scatter[0].rule == "dtype" and "BOOL" in scatter[0].message


@pytest.mark.parametrize("gen", GENERATIONS)
def test_fresh_demo_graphs_are_clean_for_every_generation(demo_graphs, gen, capsys):
    for folder in ("fp32", "trt"):
        assert main(["check-trt", str(demo_graphs / folder), "--trt", gen]) == 0
        assert "clean" in capsys.readouterr().out
    assert graphs_for(demo_graphs / "fp32", gen).name == ("trt8.5" if gen == "8.5" else "fp32")
    assert main(["check-trt", str(demo_graphs / "ort"), "--trt", gen]) == 2
    assert "nodes TensorRT would refuse" in capsys.readouterr().err


def test_trt_int8_graphs_are_symmetric_int8_with_float_bias(demo_graphs):
    manifest = Manifest.load(demo_graphs / "trt")
    assert manifest.calibration["format"] == "trt" and (demo_graphs / "trt" / manifest.calibration["cache"]).is_file()
    assert manifest.target == {"tensorrt": ["8.6", "10"], "layernorm": "node"}
    graph = onnx.load(str(manifest.path(manifest.rung(0.7, "int8"))))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.graph.initializer}
    qdq = [n for n in graph.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        assert inits[node.input[2]].dtype == np.int8 and not inits[node.input[2]].any()
    gemm_bias = [n.input[2] for n in graph.graph.node if n.op_type == "Gemm" and len(n.input) > 2]
    assert gemm_bias and all(inits[b].dtype == np.float32 for b in gemm_bias)


def test_export_writes_nothing_a_tensorrt_target_would_refuse(tmp_path, monkeypatch):
    import edge.export as export

    model = load_model(None)
    export_rungs(model, tmp_path, (1.0,), "x", verify=False, tensorrt=GENERATIONS)  # an earlier export, trt8.5/
    assert graphs_for(tmp_path, "8.5") == tmp_path / "trt8.5"
    monkeypatch.setattr(export, "decompose_layernorm", lambda model: 0)  # as if the 8.5 graphs kept LayerNorm
    with pytest.raises(CKDError, match=r"TensorRT 8\.5 would refuse .*LayerNormalization"):
        export_rungs(model, tmp_path, (1.0,), "x", verify=False, tensorrt=("8.5",))
    assert not (tmp_path / "manifest.json").exists()
    assert not (tmp_path / "trt8.5" / "manifest.json").exists()  # the old sub-export is not taken instead
    with pytest.raises(CKDError, match=r"no graphs for TensorRT 8\.5"):
        graphs_for(tmp_path, "8.5")


def _with_bool_scatter(model) -> None:
    """Route `pred_boxes` through a BOOL ScatterND (values unchanged): a node no TensorRT version parses."""
    last = next(n for n in model.graph.node if "pred_boxes" in n.output)
    last.output[list(last.output).index("pred_boxes")] = "boxes_raw"
    model.graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero"),
            onnx.numpy_helper.from_array(np.array([[0, 0, 2]], np.int64), "at"),
            onnx.numpy_helper.from_array(np.array([True]), "true"),
        ]
    )
    model.graph.node.extend(
        [
            helper.make_node("Greater", ["boxes_raw", "zero"], ["positive"], "/extra/Greater"),
            helper.make_node("ScatterND", ["positive", "at", "true"], ["mask"], "/extra/ScatterND"),
            helper.make_node("Where", ["mask", "boxes_raw", "boxes_raw"], ["pred_boxes"], "/extra/Where"),
        ]
    )


def test_quantize_writes_no_manifest_for_graphs_tensorrt_would_refuse(demo_graphs, tmp_path, capsys):
    from toy_export import rewrite_rung

    fp32, out = tmp_path / "fp32", tmp_path / "int8"
    shutil.copytree(demo_graphs / "fp32", fp32)
    shutil.copytree(demo_graphs / "trt", out)  # an earlier `--format trt` run into the same folder, trt8.5/ inside
    assert graphs_for(out, "8.5") == out / "trt8.5"
    graph = onnx.load(str(fp32 / "ckd_k0.70.onnx"))
    _with_bool_scatter(graph)
    onnx.checker.check_model(graph)
    rewrite_rung(fp32, graph.SerializeToString())  # hash updated: only a content check finds the node
    argv = ["quantize", "--onnx", str(fp32), "--calib", str(demo_graphs / "calib"), "--out", str(out)]
    assert main([*argv, "--format", "trt", "--keep-ratios", "0.7"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"1 node\(s\) TensorRT 8\.6 would refuse \(1 x dtype ScatterND\)", err), err
    assert "ckd_k0.70_int8.onnx: /extra/ScatterND (ScatterND): BOOL 'positive'" in err
    assert not (out / "manifest.json").exists()  # nothing a later `ckd build` or `ckd flash` would take
    assert not (out / "trt8.5" / "manifest.json").exists()  # the old TensorRT 8.5 graphs included
    scatter = [n for n in onnx.load(str(out / "ckd_k0.70_int8.onnx")).graph.node if n.op_type == "ScatterND"]
    assert len(scatter) == 1  # the quantizer kept the node; the lint, not the quantizer, refused the folder
    assert main([*argv, "--format", "ort", "--keep-ratios", "0.7"]) == 0  # CPU graphs are not linted for TensorRT


def test_gated_ort_quantize_into_a_trt_folder_leaves_no_trt85_graphs(demo_graphs, tmp_path, capsys):
    """`ckd quantize --format ort --gate` into a folder that held `--format trt` graphs: its old trt8.5/ manifest
    goes, so `ckd build` on TensorRT 8.5 does not take the old TensorRT graphs for the new CPU ones."""
    out = tmp_path / "int8"
    shutil.copytree(demo_graphs / "trt", out)
    assert graphs_for(out, "8.5") == out / "trt8.5"
    argv = ["quantize", "--onnx", str(demo_graphs / "fp32"), "--calib", str(demo_graphs / "calib"), "--out", str(out)]
    argv += ["--format", "ort", "--gate", "--tier", "conservative", "--keep-ratios", "0.7"]
    assert main([*argv, "--eval-sequences", "1", "--eval-length", "6"]) in (0, 2)  # the verdict does not matter
    assert Manifest.load(out, verify=False).calibration["format"] == "ort"
    assert not (out / "trt8.5" / "manifest.json").exists()
    with pytest.raises(CKDError, match=r"no graphs for TensorRT 8\.5 \(these are ONNX Runtime CPU graphs\)"):
        graphs_for(out, "8.5")


def test_flash_refuses_cpu_int8_graphs(demo_graphs, tmp_path):
    from edge.deploy.bundle import make_bundle

    wheel = tmp_path / "ckd_edge-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:  # a stand-in holding what `check_wheel` looks for
        z.writestr("ckd_cli/main.py", "")
        z.writestr("edge/deploy/verify.py", "")
    out = tmp_path / "b.tar.gz"
    with pytest.raises(CKDError, match=r"ort: no graphs for TensorRT 8\.5 \(these are ONNX Runtime CPU graphs\)"):
        make_bundle(demo_graphs / "fp32", out, int8_dir=demo_graphs / "ort", wheel=wheel)
    assert not out.exists()


def test_reexport_for_fewer_targets_leaves_no_stale_sub_export(tmp_path):
    model = load_model(None)
    export_rungs(model, tmp_path, (1.0,), "x", verify=False, tensorrt=GENERATIONS)
    assert graphs_for(tmp_path, "8.5") == tmp_path / "trt8.5"
    export_rungs(model, tmp_path, (1.0,), "x", verify=False, tensorrt=("8.6", "10"))
    with pytest.raises(CKDError, match=r"no graphs for TensorRT 8\.5: re-export with `ckd export --trt 8\.5`"):
        graphs_for(tmp_path, "8.5")
