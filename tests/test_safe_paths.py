"""The one path-safety rule for names read from manifests, records and archives."""

from __future__ import annotations

import os

import pytest

from ckd.errors import CKDError
from ckd.safe_paths import file_in, plain_name


@pytest.mark.parametrize(
    "name, problem",
    [
        ("../escape.onnx", "path separator"),
        ("sub/dir.onnx", "path separator"),
        ("/etc/passwd", "path separator"),
        ("..\\win.onnx", "path separator"),
        ("..", "names a folder"),
        (".", "names a folder"),
        ("", "non-empty string"),
        (None, "non-empty string"),
        (7, "non-empty string"),
        ("a\nExecStart=evil", "control character"),
        ("nul\x00.onnx", "control character"),
        ("-rf", "starts with '-'"),
        ("x" * 256, "longer than 255 bytes"),
    ],
)
def test_unsafe_names_are_refused_naming_the_source(name, problem):
    with pytest.raises(CKDError, match=f"manifest.json: file name .* {problem}"):
        plain_name(name, "manifest.json")


@pytest.mark.parametrize("name", ["ckd_k0.70.onnx", "calib.cache", ".hidden", "a b.onnx", "x" * 255, "é.onnx"])
def test_plain_names_pass(name):
    assert plain_name(name, "m") == name


def test_file_in_refuses_links_and_special_files(tmp_path):
    (tmp_path / "real.onnx").write_bytes(b"x")
    (tmp_path / "outside").write_bytes(b"secret")
    (tmp_path / "link.onnx").symlink_to(tmp_path / "outside")
    (tmp_path / "dangling.onnx").symlink_to(tmp_path / "nowhere")
    (tmp_path / "dir.onnx").mkdir()
    os.mkfifo(tmp_path / "fifo.onnx")
    assert file_in(tmp_path, "real.onnx", "m.json") == tmp_path / "real.onnx"
    for name, kind in [("link.onnx", "symlink"), ("dangling.onnx", "symlink"), ("dir.onnx", "folder")]:
        with pytest.raises(CKDError, match=f"{name}: listed in m.json but is a {kind}, not a regular file"):
            file_in(tmp_path, name, "m.json")
    with pytest.raises(CKDError, match="fifo.onnx: listed in m.json but is a FIFO"):
        file_in(tmp_path, "fifo.onnx", "m.json")  # never opened: reading a FIFO would block forever
    with pytest.raises(CKDError, match="gone.onnx: listed in m.json but missing"):
        file_in(tmp_path, "gone.onnx", "m.json")
    assert file_in(tmp_path, "new.onnx", "m.json", must_exist=False) == tmp_path / "new.onnx"


def test_engine_keys_from_records_stay_in_the_cache(tmp_path):
    from edge.trt.cache import EngineKey, engine_path

    key = EngineKey("0" * 64, 0.7, "fp16", "10.3.0", "orin", "8.7")
    assert engine_path(tmp_path, key) == tmp_path / "ckd_k0.70_fp16.engine"
    for precision in ("../../../etc/cron.d/x", "fp16/../../x"):  # a crafted selection.json
        with pytest.raises(CKDError, match="engine key: file name .* contains a path separator"):
            engine_path(tmp_path, EngineKey("0" * 64, 0.7, precision, "10.3.0", "orin", "8.7"))
