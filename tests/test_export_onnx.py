"""Export: one static ONNX graph per rung, parity with torch, manifest hashes, bad files refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ckd.errors import CKDError
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd_cli.main import main
from edge.export import check_onnx, export_rungs, op_counts, parity
from edge.manifest import Manifest

RUNGS = (1.0, 0.7, 0.5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(3)
    model = CKDNet(preset("nano")).eval()
    out = tmp_path_factory.mktemp("onnx")
    manifest, errors = export_rungs(model, out, RUNGS, "random:nano:3")
    return model, out, manifest, errors


def test_parity_per_rung(exported):
    model, _, manifest, errors = exported
    assert sorted(errors) == sorted(RUNGS)
    for rung in manifest.rungs:
        err = errors[rung.keep_ratio]
        assert max(err.values()) < 1e-4, (rung.keep_ratio, err)
        fresh = parity(model, manifest.path(rung), rung.keep_ratio, seed=11)  # other random inputs
        assert max(fresh.values()) < 1e-4


def test_graph_is_static_opset17_with_constant_topk(exported):
    import onnx

    _, _, manifest, _ = exported
    for rung in manifest.rungs:
        graph = onnx.load(str(manifest.path(rung)))
        assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
        for value in list(graph.graph.input) + list(graph.graph.output):
            dims = value.type.tensor_type.shape.dim
            assert all(d.HasField("dim_value") for d in dims), value.name
        ops = op_counts(manifest.path(rung))
        assert ops["LayerNormalization"] == 2 * (4 * 2 + 1)  # norm1, norm2 per block + final norm, two branches
        assert ops["TopK"] == (0 if rung.keep_ratio == 1.0 else 3)
        for node in graph.graph.node:
            if node.op_type == "TopK":
                k = node.input[1]
                init = {i.name for i in graph.graph.initializer}
                const = {o for n in graph.graph.node if n.op_type == "Constant" for o in n.output}
                assert k in init or k in const, "TopK K must be a constant"


def test_manifest_records_files_and_hashes(exported):
    _, out, manifest, _ = exported
    loaded = Manifest.load(out)
    assert loaded.keep_ratios == tuple(sorted(RUNGS))
    assert loaded.checkpoint_sha256 == "random:nano:3"
    assert loaded.inputs["search_rgb"] == [1, 3, 128, 128]
    assert loaded.outputs["score_map"] == [1, 1, 8, 8]
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_tampered_rung_is_refused(exported, tmp_path):
    _, out, manifest, _ = exported
    for p in out.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    victim = tmp_path / manifest.rungs[0].file
    victim.write_bytes(victim.read_bytes()[:-100])  # truncated
    with pytest.raises(CKDError, match="sha256 mismatch"):
        Manifest.load(tmp_path)
    with pytest.raises(CKDError, match="not a valid ONNX model"):
        check_onnx(victim)
    foreign = tmp_path / "foreign.onnx"
    foreign.write_text(json.dumps({"not": "onnx"}))
    with pytest.raises(CKDError, match="foreign.onnx"):
        check_onnx(foreign)


def test_cli_export_writes_manifest_and_reports_error(tmp_path, capsys):
    rc = main(["export", "--preset", "nano", "--out", str(tmp_path / "x"), "--keep-ratios", "0.7"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "max abs error vs torch" in out
    assert Manifest.load(tmp_path / "x").keep_ratios == (0.7,)
    assert main(["export", "--preset", "nano", "--out", str(tmp_path / "y"), "--keep-ratios", "1.5"]) == 2
    assert not (tmp_path / "y" / "manifest.json").exists()


def test_outputs_are_finite_and_shaped(exported):
    import onnxruntime as ort

    from edge.export import random_inputs

    _, _, manifest, _ = exported
    sess = ort.InferenceSession(str(manifest.path(manifest.rungs[-1])), providers=["CPUExecutionProvider"])
    outs = sess.run(None, random_inputs(preset("nano"), 5))
    assert [list(o.shape) for o in outs] == list(manifest.outputs.values())
    assert all(np.isfinite(o).all() for o in outs)
