"""Engine cache keys and invalidation: every key field, a tampered engine, a broken record."""

from __future__ import annotations

import dataclasses

import pytest

from ckd.errors import CKDError
from edge.trt import cache
from edge.trt.cache import EngineKey

KEY = EngineKey("ab" * 32, 0.7, "fp16", "10.3.0", "Jetson Orin Nano", "8.7")


def test_store_then_hit(tmp_path):
    path = cache.store(tmp_path, KEY, b"engine-bytes", {"build_seconds": 12.5})
    assert path.name == "ckd_k0.70_fp16.engine"
    result = cache.check(tmp_path, KEY)
    assert result.ok and result.path == path
    assert cache.load(tmp_path, KEY) == b"engine-bytes"
    assert cache.record(tmp_path, KEY)["build_seconds"] == 12.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckd_k0.70_fp16.engine", "ckd_k0.70_fp16.engine.json"]


def test_missing_engine(tmp_path):
    result = cache.check(tmp_path, KEY)
    assert not result.ok and result.reason == "ckd_k0.70_fp16.engine: not built yet"
    with pytest.raises(CKDError, match="not built yet .*ckd build"):
        cache.load(tmp_path, KEY)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"model_sha256": "cd" * 32}, "model_sha256 'abab"),
        ({"tensorrt": "10.7.0"}, "tensorrt '10.3.0' -> '10.7.0'"),
        ({"device": "Jetson Orin NX"}, "device 'Jetson Orin Nano' -> 'Jetson Orin NX'"),
        ({"compute_capability": "8.6"}, "compute_capability '8.7' -> '8.6'"),
    ],
)
def test_key_field_change_invalidates_with_reason(tmp_path, change, expected):
    cache.store(tmp_path, KEY, b"engine-bytes")
    result = cache.check(tmp_path, dataclasses.replace(KEY, **change))
    assert not result.ok
    assert result.reason.startswith("ckd_k0.70_fp16.engine: rebuilding, ")
    assert expected in result.reason
    assert "\n" not in result.reason


def test_rung_precision_and_dla_get_their_own_files(tmp_path):
    cache.store(tmp_path, KEY, b"gpu")
    dla = dataclasses.replace(KEY, dla_core=1, precision="int8")
    assert cache.engine_path(tmp_path, dla).name == "ckd_k0.70_int8_dla1.engine"
    assert not cache.check(tmp_path, dla).ok
    cache.store(tmp_path, dla, b"dla")
    assert cache.load(tmp_path, KEY) == b"gpu" and cache.load(tmp_path, dla) == b"dla"


def test_tampered_engine_and_broken_record(tmp_path):
    path = cache.store(tmp_path, KEY, b"engine-bytes")
    path.write_bytes(b"engine-bytez")
    assert "checksum does not match" in cache.check(tmp_path, KEY).reason
    cache.store(tmp_path, KEY, b"engine-bytes")
    path.with_name(path.name + ".json").write_text("{")
    assert "unreadable cache record" in cache.check(tmp_path, KEY).reason


def test_timing_cache_path_per_version_and_device(tmp_path):
    a = cache.timing_cache_path(tmp_path, "10.3.0", "Jetson Orin Nano")
    assert a.name == "timing_Jetson-Orin-Nano_trt10.3.0.cache"
    assert a != cache.timing_cache_path(tmp_path, "8.6.2", "Jetson Orin Nano")
