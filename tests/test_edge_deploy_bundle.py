"""Flash bundles: contents, checksums, what `ckd flash` refuses, and the commands it would run on the device."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from bundle_kit import build_bundle, extract, install_sh, kit_wheel, systemd_words
from toy_export import edit_manifest as edit
from toy_export import rewrite_rung, toy_export

from ckd.errors import CKDError
from ckd_cli.main import build_parser, main
from edge.deploy.bundle import REMOTE_VERIFIER, build_verifier, remote_install_script
from edge.deploy.flash import flash_commands, write_archive_sum
from edge.deploy.verify import SUMS_NAME, verify_tree
from edge.manifest import sha256_file


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """One real bundle (real kit wheel built with pip) shared by the tests of this module."""
    return build_bundle(tmp_path_factory.mktemp("bundle"), build_args=["--dla", "0"])


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
        "verify.pyz",
        "ckd-tracker.service",
        SUMS_NAME,
    ):
        assert expected in names, expected
    wheels = [n for n in names if n.startswith("wheels/")]
    assert len(wheels) == 1 and wheels[0].endswith("-py3-none-any.whl")
    with zipfile.ZipFile(root / wheels[0]) as whl:
        assert "edge/deploy/bundle.py" in whl.namelist()
    assert (root / "install.sh").stat().st_mode & 0o111
    unit = (root / "ckd-tracker.service").read_text()
    assert "Restart=on-failure" in unit
    assert "ExecStartPre=@PREFIX@/venv/bin/ckd build --onnx @PREFIX@/model --int8 @PREFIX@/model-int8 --dla 0" in unit
    # the service's command line is one the real `ckd run` parser accepts
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = systemd_words(exec_start.removeprefix("ExecStart=").replace("@PREFIX@", "/opt/ckd"))
    assert argv[0] == "/opt/ckd/venv/bin/ckd"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.backend, args.model_dir) == ("run", "tensorrt", "/opt/ckd/model")
    info = json.loads((root / "bundle.json").read_text())
    assert info["format"] == "ckd-bundle/1" and info["keep_ratios"] == [0.7, 1.0] and info["int8"]
    sums = dict(reversed(line.split("  ")) for line in (root / SUMS_NAME).read_text().splitlines())
    assert set(sums) == names - {SUMS_NAME}  # every shipped file is listed
    assert sums["model/ckd_k0.70.onnx"] == sha256_file(root / "model/ckd_k0.70.onnx")
    assert verify_tree(root) == (len(sums), None)


def test_calibration_cache_is_shipped_and_listed(tmp_path):
    export = toy_export(tmp_path / "e", ratios=(0.7,))
    (tmp_path / "e" / "calib.cache").write_bytes(b"TRT-8601-EntropyCalibration2\n")
    digest = sha256_file(tmp_path / "e" / "calib.cache")
    edit(tmp_path / "e", lambda d: d.update(calibration={"cache": "calib.cache", "cache_sha256": digest}))
    (tmp_path / "e" / "unlisted.onnx").write_bytes(b"x")  # only listed files travel
    assert (
        main(
            [
                "flash",
                "--onnx",
                str(export.directory),
                "--bundle",
                str(tmp_path / "b.tar.gz"),
                "--wheel",
                str(kit_wheel()),
            ]
        )
        == 0
    )
    root = extract(tmp_path / "b.tar.gz", tmp_path / "x")
    assert f"{digest}  model/calib.cache" in (root / SUMS_NAME).read_text().splitlines()
    assert not (root / "model" / "unlisted.onnx").exists()


def test_reference_comes_from_the_shipped_rungs(tmp_path):
    """A stale reference.npz left in the export folder is never shipped: the bundle makes its own."""
    toy_export(tmp_path / "e", ratios=(1.0, 0.7))
    np.savez(tmp_path / "e" / "reference.npz", **{"k0.70/score_map": np.zeros((1, 1, 8, 8), np.float32)})
    out = tmp_path / "b.tar.gz"
    assert main(["flash", "--onnx", str(tmp_path / "e"), "--bundle", str(out), "--wheel", str(kit_wheel())]) == 0
    with np.load(extract(out, tmp_path / "x") / "model" / "reference.npz") as ref:
        assert {"k1.00/score_map", "k0.70/pred_boxes", "input/search_rgb"} <= set(ref.files)
        assert ref["k0.70/score_map"].std() > 0  # real outputs, not the zeros left behind


@pytest.fixture
def export_dir(tmp_path):
    return toy_export(tmp_path / "e", ratios=(1.0, 0.7)).directory


def flash_cli(export_dir, tmp_path, *extra):
    out = tmp_path / "b.tar.gz"
    return main(["flash", "--onnx", str(export_dir), "--bundle", str(out), *extra])


def non_onnx(d):
    rewrite_rung(d, b"this is not a graph")


def int8_only(d):
    shutil.rmtree(d)
    toy_export(d, ratios=(0.7,), int8=True)
    edit(d, lambda m: m.update(rungs=[r for r in m["rungs"] if r["precision"] == "int8"]))


@pytest.mark.parametrize(
    "damage, extra, message",
    [
        (None, ["--wheel", "{tmp}/missing.whl"], "--wheel .*missing.whl: no such file"),
        (None, ["--wheel", "{tmp}/e/manifest.json"], "manifest.json: not a wheel"),
        (non_onnx, [], "ckd_k0.70.onnx: not a valid ONNX model"),
        (lambda d: edit(d, lambda m: m.update(rungs=[])), [], "manifest.json: lists no rungs"),
        (lambda d: edit(d, lambda m: m.update(config={})), [], "config must be a non-empty JSON object"),
        (int8_only, [], "no fp32 rungs, nothing to ship"),
        (
            None,
            ["--run-args", "--rgb csi://0\nExecStartPre=/bin/sh -c evil"],
            "--run-args: contains the control character",
        ),
        (None, ["--run-args", "--rgb 'csi://0"], "--run-args .*No closing quotation"),
        (None, ["--run-args", "--rgb csi://0 --tir csi://1 --bogus"], r"`ckd run` would refuse them .*--bogus"),
        (None, ["--run-args", "--rgb csi://0 --tir csi://1 --out @USER@"], "@USER@ is filled in by the installer"),
        (None, ["--build-args", "--precision fp8"], r"`ckd build` would refuse them .*fp8"),
        (None, ["--sign-key", "{tmp}/no-key"], "--sign-key .*no-key: no such key file"),
        (None, ["--target=-oProxyCommand=sh"], "--target '-oProxyCommand=sh': expected user@host"),
        (None, ["--target", "u@h", "--remote-dir", "b; rm -rf ~"], "--remote-dir 'b; rm -rf ~'"),
        (None, ["--target", "u@h", "--port", "0"], "--port 0: not a TCP port"),
    ],
)
def test_flash_refuses_in_one_line_and_writes_nothing(export_dir, tmp_path, capsys, damage, extra, message):
    if damage:
        damage(export_dir)
    wheel = [] if "--wheel" in extra else ["--wheel", str(kit_wheel())]
    assert flash_cli(export_dir, tmp_path, *wheel, *(a.format(tmp=tmp_path) for a in extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ckd flash: error: "), err
    assert __import__("re").search(message, err[0]), err[0]
    assert not list(tmp_path.glob("*.tar.gz*")) and not list(tmp_path.glob(".b.tar.gz*"))


def test_int8_from_another_model_is_refused(export_dir, tmp_path):
    toy_export(tmp_path / "q", ratios=(0.7,), int8=True)
    edit(tmp_path / "q", lambda m: m.update(checkpoint_sha256="f" * 64))
    with pytest.raises(CKDError, match="quantized from another model"):
        build_bundle(tmp_path / "x", int8_dir=tmp_path / "q")


def test_signed_bundle(tmp_path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev@example", "-f", str(key)], check=True)
    root = extract(build_bundle(tmp_path, sign_key=key), tmp_path / "x")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"dev@example {key.with_suffix('.pub').read_text()}")
    assert verify_tree(root, signers)[1] == "dev@example"
    result = install_sh(root, "--verify-only", "--allowed-signers", str(signers))
    assert result.returncode == 0 and "signed by dev@example" in result.stdout, result.stderr


def test_remote_script_checks_archive_and_unpacks_with_the_verifier(bundle, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    copy = remote / "ckd.tar.gz"
    copy.write_bytes(bundle.read_bytes())
    write_archive_sum(copy)
    build_verifier(remote / REMOTE_VERIFIER)
    script = remote_install_script("ckd.tar.gz", str(remote), ["--verify-only"])
    ok = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    listed = len((remote / "ckd" / SUMS_NAME).read_text().splitlines())
    assert ok.stdout.count(f"all {listed} files verified") == 2  # by the verifier that unpacked it, then install.sh
    copy.write_bytes(copy.read_bytes() + b"junk")
    bad = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "archive checksum mismatch" in bad.stderr


def test_flash_commands_quote_every_value(tmp_path):
    bundle, verifier = tmp_path / "b.tar.gz", tmp_path / REMOTE_VERIFIER
    cmds = flash_commands(bundle, "nvidia@orin.local", verifier, "my-bundles", ["--prefix", "/opt/x y"], 2222)
    assert cmds[0] == ["ssh", "-p", "2222", "nvidia@orin.local", "mkdir -p -- my-bundles"]
    assert cmds[1][0] in ("rsync", "scp") and cmds[1][-1] == "nvidia@orin.local:my-bundles/"
    assert {str(bundle), f"{bundle}.sha256", str(verifier)} <= set(cmds[1])
    assert cmds[2][:5] == ["ssh", "-p", "2222", "-t", "nvidia@orin.local"]
    assert cmds[2][5].endswith("./b/install.sh --prefix '/opt/x y'")  # one word on the device's shell
    for target in ["orin", "nvidia@10.0.0.2", "u_1@jetson-01.lan", "u@[fe80::1]"]:
        flash_commands(bundle, target, verifier)


@pytest.mark.parametrize(
    "target",
    ["-oProxyCommand=sh", "-v", "nvidia@-oX", "nvidia@orin; rm -rf /", "a b@h", "u@h\n", "u@h:/tmp", "@h", "u@"],
)
def test_flash_refuses_targets(tmp_path, target):
    with pytest.raises(CKDError, match="--target .*expected user@host"):
        flash_commands(tmp_path / "b.tar.gz", target, tmp_path / REMOTE_VERIFIER)


@pytest.mark.parametrize("remote_dir", ["-rf", "a b", "$(reboot)", "x;y", "../up", "d/../../x", "~/b", "q'uote", ""])
def test_flash_refuses_remote_dirs(tmp_path, remote_dir):
    with pytest.raises(CKDError, match="--remote-dir"):
        flash_commands(tmp_path / "b.tar.gz", "u@h", tmp_path / REMOTE_VERIFIER, remote_dir)


def test_flash_refuses_bundle_names_and_ports(tmp_path):
    with pytest.raises(CKDError, match="starts with '-'"):
        flash_commands(tmp_path / "-x.tar.gz", "u@h", tmp_path / REMOTE_VERIFIER)
    for port in (0, 65536, -22):
        with pytest.raises(CKDError, match="not a TCP port"):
            flash_commands(tmp_path / "b.tar.gz", "u@h", tmp_path / REMOTE_VERIFIER, port=port)


def test_cli_writes_bundle_and_rejects_missing_destination(tmp_path, capsys):
    export = toy_export(tmp_path / "export", ratios=(0.7,))
    out = tmp_path / "cli.tar.gz"
    assert main(["flash", "--onnx", str(export.directory), "--bundle", str(out), "--wheel", str(kit_wheel())]) == 0
    assert out.is_file() and (tmp_path / "cli.tar.gz.sha256").is_file()
    assert main(["flash", "--onnx", str(export.directory)]) == 2
    assert "give --target" in capsys.readouterr().err
