"""Device detection from sample Jetson files, the JetPack table, profiles of discrete GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckd.errors import CKDError
from edge.devices import (
    JETPACK,
    PROFILES,
    detect_jetson,
    jetpack_for_l4t,
    parse_nv_tegra_release,
    profile_from_model,
    profile_from_nvidia_smi,
)

SAMPLES = Path(__file__).parent / "data" / "jetson"


@pytest.mark.parametrize(
    "sample, key, l4t, jetpack, trt, dla",
    [
        ("orin-nano-jp61", "orin-nano", "36.4.0", "6.1", "10.3.0", 0),
        ("orin-nx8-jp511", "orin-nx", "35.3.1", "5.1.1", "8.5.2", 1),
        ("agx-orin-jp60", "agx-orin", "36.3.0", "6.0", "8.6.2", 2),
        ("xavier-nx-jp512", "xavier-nx", "35.4.1", "5.1.2", "8.5.2", 2),
        ("agx-xavier-jp461", "agx-xavier", "32.7.1", "4.6.1", "8.2.1", 2),
    ],
)
def test_detect_sample_jetsons(sample, key, l4t, jetpack, trt, dla):
    dev = detect_jetson(SAMPLES / sample)
    assert dev is not None and dev.is_jetson
    assert (dev.profile.key, dev.l4t, dev.jetpack.jetpack, dev.jetpack.tensorrt) == (key, l4t, jetpack, trt)
    assert dev.profile.dla_cores == dla
    assert "\x00" not in dev.model


def test_old_jetpack_refused_new_accepted():
    with pytest.raises(CKDError, match=r"JetPack 4\.6\.1 \(TensorRT 8\.2\.1\).*8\.5\+"):
        detect_jetson(SAMPLES / "agx-xavier-jp461").check_supported()
    detect_jetson(SAMPLES / "orin-nano-jp61").check_supported()


def test_no_release_file_means_not_jetson(tmp_path):
    assert detect_jetson(tmp_path) is None


def test_parse_release_and_table():
    assert parse_nv_tegra_release("# R35 (release), REVISION: 5.0, GCID: 1, BOARD: t186ref") == "35.5.0"
    with pytest.raises(CKDError, match="cannot parse nv_tegra_release"):
        parse_nv_tegra_release("garbage")
    # an unknown point release maps to the closest older known one of the same major
    assert jetpack_for_l4t("36.4.7").jetpack == "6.2.1"
    assert jetpack_for_l4t("35.3.2").jetpack == "5.1.1"
    with pytest.raises(CKDError, match="R34.1.0"):
        jetpack_for_l4t("34.1.0")
    l4ts = [tuple(int(x) for x in r.l4t.split(".")) for r in JETPACK]
    assert l4ts == sorted(l4ts) and len(set(l4ts)) == len(l4ts)
    assert {r.cuda for r in JETPACK if r.jetpack.startswith("6.")} == {"12.2", "12.6"}


def test_profiles_and_precisions():
    assert PROFILES["orin-nano"].dla_cores == 0  # no DLA on Orin Nano
    assert PROFILES["agx-orin"].precisions == ("int8", "fp16", "fp32")
    assert PROFILES["agx-orin"].default_precision == "best"
    assert profile_from_model("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", 15.3).dla_cores == 2
    with pytest.raises(CKDError, match="unknown Jetson module 'Raspberry Pi 5'"):
        profile_from_model("Raspberry Pi 5\x00")


def test_discrete_gpu_profiles():
    rtx = profile_from_nvidia_smi("NVIDIA GeForce RTX 3060, 8.6\n")
    assert (rtx.key, rtx.integrated, rtx.dla_cores, rtx.default_precision) == (
        "gpu-nvidia-geforce-rtx-3060",
        False,
        0,
        "best",
    )
    pascal = profile_from_nvidia_smi("NVIDIA GeForce GTX 1080, 6.1")
    assert pascal.precisions == ("int8", "fp32") and pascal.default_precision == "int8"
    with pytest.raises(CKDError, match="cannot parse nvidia-smi"):
        profile_from_nvidia_smi("No devices were found")


def test_gpu_tests_fail_loudly_on_a_jetson_without_tensorrt():
    from conftest import gpu_status

    assert gpu_status(tegra=True, nvidia_smi=False, tensorrt_error=None) == ("run", "")
    assert gpu_status(tegra=False, nvidia_smi=True, tensorrt_error=None) == ("run", "")
    action, why = gpu_status(tegra=True, nvidia_smi=False, tensorrt_error="No module named 'tensorrt'")
    assert action == "fail" and "No module named 'tensorrt'" in why and "--system-site-packages" in why
    assert gpu_status(tegra=False, nvidia_smi=False, tensorrt_error="x")[0] == "skip"
    assert gpu_status(tegra=False, nvidia_smi=True, tensorrt_error="x")[0] == "skip"
