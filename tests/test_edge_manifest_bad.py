"""Export folders that must not pass: crafted names, links, missing checksums, incomplete fields, foreign graphs.

Every fault ends in one CKDError (one `ckd CMD: error:` line from the CLI) naming the file and what is wrong.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from toy_export import edit_manifest as edit
from toy_export import rewrite_rung, toy_export, toy_graph

from calibration.store import write_calibration
from ckd.errors import CKDError
from ckd.track.backend import input_shapes
from ckd_cli.main import main
from edge.backends.onnxruntime import OrtBackend
from edge.export import check_rung
from edge.manifest import MANIFEST_NAME, Manifest, sha256_file


def rung0(doc) -> dict:
    return doc["rungs"][0]


MANIFEST_FAULTS = [
    # security: names joined to the folder
    (lambda d: rung0(d).update(file="../ckd_k1.00.onnx"), "file name '../ckd_k1.00.onnx' contains a path separator"),
    (lambda d: rung0(d).update(file="/tmp/x.onnx"), "contains a path separator"),
    (lambda d: rung0(d).update(file="-x.onnx"), "starts with '-'"),
    (lambda d: rung0(d).update(file="ckd_k1.00.txt"), "is not an .onnx file"),
    (lambda d: d.update(calibration={"cache": "../../etc/shadow", "cache_sha256": "0" * 64}), "path separator"),
    (lambda d: d.update(calibration={"cache": "calib.cache"}), "has no cache_sha256"),
    (lambda d: d.update(calibration=["cache"]), "calibration must be a JSON object"),
    # reliability: incomplete or inconsistent fields
    (lambda d: d.update(rungs=[]), "lists no rungs"),
    (lambda d: d.update(config={}), "config must be a non-empty JSON object"),
    (lambda d: d["config"].pop("search_size"), "config lacks search_size"),
    (lambda d: d["config"].update(depth="4"), "config depth = '4' is not a positive integer"),
    (lambda d: d["inputs"].update(search_rgb=[1, 3, 256, 256]), "inputs .* are not the CKD tensors"),
    (lambda d: d["outputs"].pop("pred_boxes"), "outputs .* are not the CKD tensors"),
    (lambda d: d["rungs"].append(dict(rung0(d))), "is listed twice"),
    (lambda d: rung0(d).update(sha256="abc"), "has no sha256"),
    (lambda d: d.update(checkpoint_sha256=""), "checkpoint_sha256 is empty"),
    (lambda d: d.update(rungs={"a": 1}), "malformed manifest"),
]


@pytest.mark.parametrize("change, message", MANIFEST_FAULTS)
def test_bad_manifest_fields(tmp_path, change, message):
    toy_export(tmp_path)
    edit(tmp_path, change)
    with pytest.raises(CKDError, match=f"manifest.json: .*{message}"):
        Manifest.load(tmp_path)


def test_manifest_not_utf8(tmp_path):
    toy_export(tmp_path)
    (tmp_path / MANIFEST_NAME).write_bytes(b"\xff{}")
    with pytest.raises(CKDError, match="manifest.json: not UTF-8"):
        Manifest.load(tmp_path)


def test_listed_file_that_is_a_link_or_fifo(tmp_path):
    toy_export(tmp_path / "m", ratios=(1.0,))
    rung = tmp_path / "m" / "ckd_k1.00.onnx"
    rung.rename(tmp_path / "outside.onnx")
    rung.symlink_to(tmp_path / "outside.onnx")  # same bytes, same sha256: only the link rule catches it
    with pytest.raises(CKDError, match="ckd_k1.00.onnx: listed in manifest.json but is a symlink"):
        Manifest.load(tmp_path / "m")
    rung.unlink()
    os.mkfifo(rung)
    with pytest.raises(CKDError, match="ckd_k1.00.onnx: listed in manifest.json but is a FIFO"):
        Manifest.load(tmp_path / "m")


def test_calibration_cache_is_checksummed(tmp_path):
    toy_export(tmp_path)
    (tmp_path / "calib.cache").write_bytes(b"TRT-8601-EntropyCalibration2\n")
    digest = sha256_file(tmp_path / "calib.cache")
    edit(tmp_path, lambda d: d.update(calibration={"cache": "calib.cache", "cache_sha256": digest}))
    m = Manifest.load(tmp_path)
    assert m.files()["calib.cache"] == digest and m.calibration_cache() == tmp_path / "calib.cache"
    (tmp_path / "calib.cache").write_bytes(b"TRT-8601-EntropyCalibration2\nswapped\n")
    with pytest.raises(CKDError, match="calib.cache: sha256 mismatch"):
        Manifest.load(tmp_path)


def foreign_graph() -> bytes:
    g = toy_graph(0.7)
    g.graph.input[0].name = "image"
    for node in g.graph.node:
        node.input[:] = ["image" if i == "template_rgb" else i for i in node.input]
    return g.SerializeToString()


def wrong_shape_graph() -> bytes:
    return toy_graph(0.7, template=128, search=256).SerializeToString()  # base-sized graph in a nano manifest


@pytest.mark.parametrize(
    "data, message",
    [
        (lambda good: good[: len(good) // 2], "not a valid ONNX model"),
        (lambda good: b"not an onnx file at all", "not a valid ONNX model"),
        (lambda good: foreign_graph(), "are not the CKD inputs"),
        (lambda good: wrong_shape_graph(), "graph inputs .* are not the manifest.json inputs"),
    ],
)
def test_rung_content_is_checked(tmp_path, data, message):
    toy_export(tmp_path)
    rewrite_rung(tmp_path, data((tmp_path / "ckd_k0.70.onnx").read_bytes()))
    m = Manifest.load(tmp_path)  # the hash matches
    with pytest.raises(CKDError, match=f"ckd_k0.70.onnx: .*{message}"):
        check_rung(m, m.rung(0.7))


def test_runtime_refuses_truncated_rung_in_one_line(tmp_path):
    toy_export(tmp_path)
    rewrite_rung(tmp_path, (tmp_path / "ckd_k0.70.onnx").read_bytes()[:200])
    backend = OrtBackend(tmp_path)
    with pytest.raises(CKDError, match="ckd_k0.70.onnx: ONNX Runtime cannot load it"):
        backend.run(backend.input_buffers(), keep_ratio=0.7)


@pytest.mark.parametrize(
    "argv",
    [
        ["quantize", "--onnx", "{m}", "--calib", "{m}", "--out", "{tmp}/q"],
        ["calibrate", "--model", "{m}", "--out", "{tmp}/cal", "--frames", "2"],
        [
            "run",
            "--rgb",
            "synthetic://?seed=1",
            "--tir",
            "synthetic://?seed=1",
            "--model-dir",
            "{m}",
            "--out",
            "{tmp}/r",
        ],
    ],
)
def test_cli_ends_in_one_line_for_a_broken_export(tmp_path, capsys, argv):
    toy_export(tmp_path / "m")
    edit(tmp_path / "m", lambda d: d.update(config={}))
    args = [a.format(m=tmp_path / "m", tmp=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"ckd {argv[0]}: error: {tmp_path / 'm' / MANIFEST_NAME}: config must be a non-empty JSON object, got {{}}"
    ]


def test_quantize_refuses_truncated_rung_before_working(tmp_path, capsys):
    toy_export(tmp_path / "m")
    rewrite_rung(tmp_path / "m", onnx.load(tmp_path / "m" / "ckd_k0.70.onnx").SerializeToString()[:300])
    rng = np.random.default_rng(0)
    crops = {k: rng.standard_normal((2, *v[1:])).astype(np.float32) for k, v in input_shapes(64, 128).items()}
    write_calibration(tmp_path / "cal", crops, "synthetic", 0, {"name": "nano", "checkpoint_sha256": "0" * 64})
    assert (
        main(
            ["quantize", "--onnx", str(tmp_path / "m"), "--calib", str(tmp_path / "cal"), "--out", str(tmp_path / "q")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ckd_k0.70.onnx: not a valid ONNX model" in err
