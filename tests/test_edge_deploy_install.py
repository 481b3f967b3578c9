"""install.sh and the systemd unit: values refused or escaped, a unit systemd accepts, hardening, state folders.

Only the installer's modes that change nothing (--print-unit, --dry-run, --verify-only) run here, and, as root, one
--no-service install into a scratch prefix with TensorRT's import and pip stood in for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from bundle_kit import build_bundle, extract, install_sh, systemd_words

from ckd.errors import CKDError
from ckd_cli.main import build_parser
from edge.deploy.escape import split_args, systemd_command, systemd_word
from edge.deploy.scripts import INSTALL_SH, STATE_DIR

NASTY_WORDS = [
    "%h",  # a systemd specifier
    "100%",
    "$HOME",  # a variable
    "${PATH}",
    ";",  # a command separator when bare
    'say "hi"',
    "back\\slash",
    "two words",
    "it's",
    "",
    "--init=1,2,3,4",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    run = ["--rgb", "csi://0", "--tir", "v4l2:///dev/video1?format=GRAY16_LE", "--out", f"{STATE_DIR}/run"]
    return extract(build_bundle(tmp, run_args=run, build_args=["--precision", "fp16"]), tmp / "x")


def unit_of(root, *args) -> str:
    result = install_sh(root, "--print-unit", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def directive(unit: str, key: str) -> str:
    (value,) = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]
    return value


def test_unit_is_hardened_and_runs_as_the_service_user(root):
    unit = unit_of(root, "--prefix", "/opt/ckd", "--user", "tracker")
    assert directive(unit, "User") == "tracker"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RuntimeDirectory": "ckd",
    }.items():
        assert directive(unit, key) == value, key
    groups = directive(unit, "SupplementaryGroups").split() if "SupplementaryGroups=" in unit else []
    assert set(groups) <= {"video", "render"}  # device access only through these groups
    assert "@" not in unit.replace("multi-user", "")  # every placeholder filled in


def test_service_writes_only_where_systemd_makes_its_state(root):
    """The default service can start: its --out folder and engine cache are StateDirectory= folders."""
    unit = unit_of(root, "--prefix", "/opt/ckd")
    states = [f"/var/lib/{d}" for d in directive(unit, "StateDirectory").split()]
    assert STATE_DIR in states and directive(unit, "WorkingDirectory") == STATE_DIR
    args = build_parser().parse_args(systemd_words(directive(unit, "ExecStart"))[1:])
    assert args.out in states  # made by systemd, owned by the service user, before ExecStartPre runs
    assert f"{STATE_DIR}/engines" in states  # PREFIX/model/engines links there (install.sh)
    assert 'ln -s "$STATE/engines" "$PREFIX/model/engines"' in INSTALL_SH and f"STATE={STATE_DIR}" in INSTALL_SH
    build = build_parser().parse_args(systemd_words(directive(unit, "ExecStartPre"))[1:])
    assert (build.command, build.onnx, build.int8, build.precision) == (
        "build",
        "/opt/ckd/model",
        "/opt/ckd/model-int8",
        "fp16",
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("run_words", [None, NASTY_WORDS])
def test_systemd_accepts_the_unit(root, tmp_path, run_words):
    unit = unit_of(root, "--prefix", "/opt/ckd")
    if run_words is not None:  # the escaping under test: one ExecStart, every word as given
        line = "/opt/ckd/venv/bin/ckd run " + systemd_command(run_words, "--run-args")
        unit = re.sub(r"(?m)^ExecStart=.*$", lambda _: f"ExecStart={line}", unit)
        assert systemd_words(line)[2:] == run_words
    # systemd-analyze checks that the commands exist: point the prefix at a stand-in `ckd`
    ckd = tmp_path / "prefix" / "venv" / "bin" / "ckd"
    ckd.parent.mkdir(parents=True)
    ckd.write_text("#!/bin/sh\n")
    ckd.chmod(0o755)
    path = tmp_path / "ckd-tracker.service"
    path.write_text(unit.replace("/opt/ckd/", f"{tmp_path / 'prefix'}/"))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ckd-tracker.service" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "word", ["a\nExecStartPre=/bin/sh -c evil", "tab\there", "cr\r", "nul\x00", "@USER@", "@GROUPS@", "x@BUILD_ARGS@"]
)
def test_unit_words_refused(word):
    with pytest.raises(CKDError, match="--run-args: "):
        systemd_word(word, "--run-args")


@pytest.mark.parametrize("text, message", [("--rgb 'csi://0", "No closing quotation"), ("a\nb", "control character")])
def test_argument_strings_refused(text, message):
    with pytest.raises(CKDError, match=message):
        split_args(text, "--run-args")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prefix", "relative/ckd"], "an absolute path"),
        (["--prefix", "/opt/my ckd"], "an absolute path"),
        (["--prefix", "/opt/ckd/"], "an absolute path"),
        (["--prefix", "/opt/ck%d"], "an absolute path"),
        (["--prefix", "/opt/ckd'$(reboot)'"], "an absolute path"),
        (["--prefix", "/opt/a|b"], "an absolute path"),
        (["--prefix", "/opt/../etc"], "no . or .. in it"),
        (["--prefix", "/home/nvidia/ckd"], "the service cannot read there"),
        (["--prefix", "/tmp/ckd"], "the service cannot read there"),
        (["--prefix", f"{STATE_DIR}/code"], "the service cannot read there"),
        (["--user", "Root"], "a system account name"),
        (["--user", "a;b"], "a system account name"),
        (["--user", "-x"], "a system account name"),
        (["--prefix"], "--prefix needs a value"),
    ],
)
def test_installer_refuses_values(root, args, message):
    result = install_sh(root, "--print-unit", *args)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert result.stdout == ""


def test_installer_rejects_unknown_options(root):
    result = install_sh(root, "--prefx", "/opt/ckd")
    assert result.returncode == 2 and "unknown option --prefx" in result.stderr


def test_dry_run_checks_the_account_and_changes_nothing(root):
    ok = install_sh(root, "--dry-run", "--prefix", "/opt/ckd-dry-run-test", "--user", "ckd-dry-run-test")
    assert ok.returncode == 0, ok.stderr
    assert "files verified" in ok.stdout and "would create the system user ckd-dry-run-test" in ok.stdout
    assert not os.path.exists("/opt/ckd-dry-run-test")
    root_user = install_sh(root, "--dry-run", "--prefix", "/opt/ckd", "--user", "root")
    assert root_user.returncode == 1 and "--user root: uid 0" in root_user.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a folder owned by another user")
def test_dry_run_refuses_a_prefix_in_a_folder_owned_by_someone_else(root):
    base = "/opt/ckd-test-owner"
    os.makedirs(base, exist_ok=True)
    try:
        os.chown(base, 65534, 65534)
        result = install_sh(root, "--dry-run", "--prefix", f"{base}/ckd")
        assert result.returncode == 1 and f"{base}: owned by uid 65534, not root" in result.stderr
        os.chown(base, 0, 0)
        os.chmod(base, 0o775)
        result = install_sh(root, "--dry-run", "--prefix", f"{base}/ckd")
        assert result.returncode == 1 and "writable by group or others (mode 775)" in result.stderr
        os.chmod(base, 0o755)
        os.symlink("/opt", f"{base}/link")
        result = install_sh(root, "--dry-run", "--prefix", f"{base}/link/ckd")
        assert result.returncode == 1 and f"{base}/link: a symlink" in result.stderr
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root here")
def test_install_needs_root(root):
    result = install_sh(root, "--prefix", "/opt/ckd-needs-root")
    assert result.returncode == 1 and "installing needs root" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root")
def test_no_service_install_links_no_engines_into_a_state_folder_that_never_exists(root, tmp_path):
    """`install.sh --no-service` makes no StateDirectory, so PREFIX/model/engines must not point into one; the hint
    it prints builds the engines where `ckd run --model-dir` reads them (a copy of the model the user owns)."""
    prefix = "/opt/ckd-test-no-service"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    python3 = stubs / "python3"  # JetPack's tensorrt import stood in for; everything else the real python3
    python3.write_text(f'#!/bin/sh\n[ "$*" = "-c import tensorrt" ] && exit 0\nexec {shutil.which("python3")} "$@"\n')
    python3.chmod(0o755)
    try:
        pip = os.path.join(prefix, "venv", "bin", "pip")  # an existing venv is kept: its pip only records its calls
        os.makedirs(os.path.dirname(pip), exist_ok=True)
        with open(pip, "w") as f:
            f.write(f'#!/bin/sh\necho "$@" >> {tmp_path / "pip.log"}\n')
        os.chmod(pip, 0o755)
        env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
        argv = ["bash", str(root / "install.sh"), "--no-service", "--prefix", prefix, "--user", "nobody"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        assert os.path.isdir(f"{prefix}/model") and not os.path.lexists(f"{prefix}/model/engines")
        hint = done.stdout
        assert f"cp -R {prefix}/model DIR && {prefix}/venv/bin/ckd build --onnx DIR --int8 {prefix}/model-int8" in hint
        assert "--model-dir DIR" in hint and "--cache" not in hint
        assert "--no-deps" in (tmp_path / "pip.log").read_text()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
