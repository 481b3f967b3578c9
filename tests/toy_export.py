"""A tiny real ONNX graph with the CKD tensor names and shapes, exported as rungs with a manifest (test helper)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from ckd.model.config import preset
from ckd.track.backend import input_shapes, output_shapes
from edge.manifest import MANIFEST_NAME, Manifest, Rung, rung_filename
from quantize.cpu_target import FORMAT_FOR_TARGET, host_target


def toy_graph(keep_ratio: float, template: int = 64, search: int = 128, patch: int = 16) -> onnx.ModelProto:
    """score_map = keep_ratio * patch-mean of search_rgb; size/offset = score twice; boxes = template/tir means."""
    f = search // patch
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in input_shapes(template, search).items()]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in output_shapes(f).items()]
    k = helper.make_tensor("k", TensorProto.FLOAT, [], [keep_ratio])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 1, 4])
    nodes = [
        helper.make_node("ReduceMean", ["search_rgb"], ["chan"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["chan"], ["pooled"], kernel_shape=[patch, patch], strides=[patch, patch]),
        helper.make_node("Mul", ["pooled", "k"], ["score_map"]),
        helper.make_node("Concat", ["score_map", "score_map"], ["size_map"], axis=1),
        helper.make_node("Concat", ["pooled", "pooled"], ["offset_map"], axis=1),
        helper.make_node("ReduceMean", ["template_rgb"], ["t"], axes=[2, 3], keepdims=1),
        helper.make_node("ReduceMean", ["template_tir"], ["r"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Concat", ["t", "r"], ["tr"], axis=1),
        helper.make_node("Reshape", ["tr", "shape"], ["pred_boxes"]),
    ]
    graph = helper.make_graph(nodes, "ckd_toy", ins, outs, initializer=[k, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def toy_export(directory: Path, ratios=(1.0, 0.7), int8: bool = False) -> Manifest:
    """Write toy fp32 rungs (and, with `int8`, stand-in int8 rungs recorded in this CPU's INT8 format, as
    `ckd quantize --cpu-target auto` records them) plus manifest.json into `directory`."""
    cfg = preset("nano")
    directory.mkdir(parents=True, exist_ok=True)
    rungs = []
    for precision in ("fp32", "int8") if int8 else ("fp32",):
        for k in ratios:
            path = directory / rung_filename(k, precision)
            onnx.save(toy_graph(k, cfg.template_size, cfg.search_size, cfg.patch_size), path)
            rungs.append(Rung.from_file(path, k, precision))
    manifest = Manifest(
        config=cfg.to_dict(),
        checkpoint_sha256="0" * 64,
        opset=17,
        inputs={k: list(v) for k, v in input_shapes(cfg.template_size, cfg.search_size).items()},
        outputs={k: list(v) for k, v in output_shapes(cfg.feat_size).items()},
        rungs=rungs,
        calibration={"cpu_target": host_target(), "int8_format": FORMAT_FOR_TARGET[host_target()]} if int8 else None,
    )
    manifest.save(directory)
    return manifest


def edit_manifest(directory: Path, change) -> None:
    """Apply `change(doc)` to `directory/manifest.json` (tests of what readers refuse)."""
    path = directory / MANIFEST_NAME
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def rewrite_rung(directory: Path, data: bytes, name: str = "ckd_k0.70.onnx") -> None:
    """Replace a rung's bytes and update its hash, as a careless tool would: only content checks catch it."""
    (directory / name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    edit_manifest(directory, lambda d: next(r for r in d["rungs"] if r["file"] == name).update(sha256=digest))
