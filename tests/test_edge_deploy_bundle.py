"""Flash bundles: contents, checksums, and the real install.sh refusing a tampered bundle."""

from __future__ import annotations

import json
import shlex
import subprocess
import tarfile

import pytest
from toy_export import toy_export

from ckd.errors import CKDError
from ckd_cli.main import build_parser, main
from edge.deploy.bundle import SUMS_NAME, make_bundle, remote_install_script, verify_sums
from edge.deploy.flash import flash_commands, write_archive_sum
from edge.manifest import sha256_file


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """One real bundle (real kit wheel built with pip) shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("bundle")
    toy_export(tmp / "export", ratios=(1.0, 0.7))
    toy_export(tmp / "int8", ratios=(1.0, 0.7), int8=True)
    return make_bundle(tmp / "export", tmp / "out" / "ckd.tar.gz", int8_dir=tmp / "int8", build_args="--dla 0")


def extract(bundle, dest):
    with tarfile.open(bundle) as tar:
        tar.extractall(dest, filter="data")
    (top,) = list(dest.iterdir())
    return top


def install_sh(root, *args):
    return subprocess.run(["bash", str(root / "install.sh"), *args], capture_output=True, text=True, timeout=60)


def test_bundle_contents(bundle, tmp_path):
    root = extract(bundle, tmp_path)
    assert root.name.startswith("ckd-bundle-0.1.0-00000000")
    names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for expected in (
        "model/manifest.json",
        "model/ckd_k1.00.onnx",
        "model/ckd_k0.70.onnx",
        "model/reference.npz",  # made for the device's fidelity gate
        "model-int8/ckd_k0.70_int8.onnx",
        "ckd_config.json",
        "bundle.json",
        "requirements-edge.txt",
        "install.sh",
        "ckd-tracker.service",
        SUMS_NAME,
    ):
        assert expected in names, expected
    wheels = [n for n in names if n.startswith("wheels/")]
    assert len(wheels) == 1 and wheels[0].endswith("-py3-none-any.whl")
    with __import__("zipfile").ZipFile(root / wheels[0]) as whl:
        assert "edge/deploy/bundle.py" in whl.namelist()
    assert (root / "install.sh").stat().st_mode & 0o111
    unit = (root / "ckd-tracker.service").read_text()
    assert "Restart=on-failure" in unit
    assert "ExecStartPre=@PREFIX@/venv/bin/ckd build --onnx @PREFIX@/model --int8 @PREFIX@/model-int8 --dla 0" in unit
    # the service's command line is one the real `ckd run` parser accepts
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("@PREFIX@", "/opt/ckd"))
    assert argv[0] == "/opt/ckd/venv/bin/ckd"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.backend, args.model_dir) == ("run", "tensorrt", "/opt/ckd/model")
    info = json.loads((root / "bundle.json").read_text())
    assert info["format"] == "ckd-bundle/1" and info["keep_ratios"] == [0.7, 1.0] and info["int8"]
    sums = dict(reversed(line.split("  ")) for line in (root / SUMS_NAME).read_text().splitlines())
    assert set(sums) == names - {SUMS_NAME}
    assert sums["model/ckd_k0.70.onnx"] == sha256_file(root / "model/ckd_k0.70.onnx")
    verify_sums(root)


def test_install_verify_only_accepts_intact_bundle(bundle, tmp_path):
    result = install_sh(extract(bundle, tmp_path), "--verify-only")
    assert result.returncode == 0, result.stderr
    assert "files verified" in result.stdout


def test_install_refuses_tampered_file(bundle, tmp_path):
    root = extract(bundle, tmp_path)
    onnx = root / "model" / "ckd_k0.70.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\x00")
    result = install_sh(root, "--verify-only")
    assert result.returncode == 1
    assert "model/ckd_k0.70.onnx: FAILED" in result.stderr
    assert "refusing to install" in result.stderr
    with pytest.raises(CKDError, match=r"ckd_k0\.70\.onnx: checksum does not match"):
        verify_sums(root)


def test_install_refuses_missing_and_unlisted_files(bundle, tmp_path):
    root = extract(bundle, tmp_path / "a")
    (root / "model" / "reference.npz").unlink()
    assert install_sh(root, "--verify-only").returncode == 1
    root = extract(bundle, tmp_path / "b")
    (root / "model" / "evil.sh").write_text("echo hi\n")
    result = install_sh(root, "--verify-only")
    assert result.returncode == 1 and "files not in SHA256SUMS: model/evil.sh" in result.stderr
    with pytest.raises(CKDError, match="evil.sh: not listed"):
        verify_sums(root)


def test_remote_script_checks_archive_before_unpacking(bundle, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    copy = remote / "ckd.tar.gz"
    copy.write_bytes(bundle.read_bytes())
    write_archive_sum(copy)
    script = remote_install_script("ckd.tar.gz", str(remote), "--verify-only")
    ok = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "files verified" in ok.stdout
    copy.write_bytes(copy.read_bytes() + b"junk")
    bad = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "archive checksum mismatch" in bad.stderr


def test_flash_commands(tmp_path):
    bundle = tmp_path / "b.tar.gz"
    cmds = flash_commands(bundle, "nvidia@orin.local", port=2222, install_args="--no-service")
    assert cmds[0] == ["ssh", "-p", "2222", "nvidia@orin.local", "mkdir -p ckd-bundles"]
    assert cmds[1][0] in ("rsync", "scp") and cmds[1][-1] == "nvidia@orin.local:ckd-bundles/"
    assert str(bundle) in cmds[1] and f"{bundle}.sha256" in cmds[1]
    assert cmds[2][:4] == ["ssh", "-p", "2222", "-t"] and "install.sh --no-service" in cmds[2][-1]
    with pytest.raises(CKDError, match="expected user@host"):
        flash_commands(bundle, "nvidia@orin; rm -rf /")


def test_cli_writes_bundle_and_rejects_missing_destination(bundle, tmp_path, capsys):
    export = toy_export(tmp_path / "export", ratios=(0.7,))
    wheel = next(p for p in extract(bundle, tmp_path / "x").rglob("*.whl"))
    out = tmp_path / "cli.tar.gz"
    assert main(["flash", "--onnx", str(export.directory), "--bundle", str(out), "--wheel", str(wheel)]) == 0
    assert out.is_file() and (tmp_path / "cli.tar.gz.sha256").is_file()
    assert main(["flash", "--onnx", str(export.directory)]) == 2
    assert "give --target" in capsys.readouterr().err
