"""The bundle verifier refuses anything but regular listed files, the same way in `ckd` and in install.sh.

Every tree case runs twice: through `edge.deploy.verify.verify_tree` (what `ckd verify-bundle` and `ckd flash`
use) and through the bundle's real `install.sh --verify-only` (which runs `verify.pyz` with python3).
"""

from __future__ import annotations

import ast
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from bundle_kit import build_bundle, extract, install_sh

from ckd.errors import CKDError
from ckd_cli.main import main
from edge.deploy.bundle import VERIFIER_NAME, VERIFIER_SOURCES, write_sums
from edge.deploy.verify import SIG_NAME, SUMS_NAME, verify_tree

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return build_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def root(archive, tmp_path):
    return extract(archive, tmp_path / "x")


def add_line(root: Path, line: str) -> None:
    with open(root / SUMS_NAME, "a") as f:
        f.write(line + "\n")


def swap_for_link(root: Path, rel: str) -> None:
    """Replace a listed file by a symlink to an identical copy outside the bundle: the checksum still matches."""
    outside = root.parent / "outside"
    shutil.copyfile(root / rel, outside)
    (root / rel).unlink()
    (root / rel).symlink_to(outside)


def swap_dir_for_link(root: Path, rel: str) -> None:
    shutil.move(root / rel, root.parent / "moved")
    (root / rel).symlink_to(root.parent / "moved")


TREE_FAULTS = {
    "changed file": (
        lambda r: (r / "model/ckd_k0.70.onnx").write_bytes(b"evil"),
        "ckd_k0.70.onnx: checksum does not match",
    ),
    "missing file": (lambda r: (r / "model/reference.npz").unlink(), "reference.npz: listed in SHA256SUMS but missing"),
    "unlisted file": (lambda r: (r / "model/evil.sh").write_text("id\n"), "evil.sh: not listed in SHA256SUMS"),
    "unlisted folder": (
        lambda r: ((r / "extra").mkdir(), (r / "extra/x.py").write_text("")),
        "extra/x.py: not listed",
    ),
    "listed file swapped for a symlink": (
        lambda r: swap_for_link(r, "install.sh"),
        "install.sh: a symlink in the bundle",
    ),
    "unlisted symlink": (lambda r: (r / "model/link").symlink_to("/etc/passwd"), "model/link: a symlink in the bundle"),
    "folder swapped for a symlink": (lambda r: swap_dir_for_link(r, "wheels"), "wheels: a symlink in the bundle"),
    "unlisted FIFO": (lambda r: os.mkfifo(r / "model/pipe"), "model/pipe: a FIFO in the bundle"),
    "listed file swapped for a FIFO": (
        lambda r: ((r / "bundle.json").unlink(), os.mkfifo(r / "bundle.json")),
        "bundle.json: a FIFO in the bundle",
    ),
    "nested SHA256SUMS, unlisted": (lambda r: (r / "model" / SUMS_NAME).write_text(""), "model/SHA256SUMS: not listed"),
    "nested SHA256SUMS, listed": (
        lambda r: ((r / "model" / SUMS_NAME).write_text(""), add_line(r, f"{'0' * 64}  model/{SUMS_NAME}")),
        "lists another model/SHA256SUMS",
    ),
    "sum line pointing outside": (lambda r: add_line(r, f"{'0' * 64}  ../outside"), r"file name '\.\.' names a folder"),
    "sum line pointing deeper outside": (
        lambda r: add_line(r, f"{'0' * 64}  model/../../etc/passwd"),
        r"file name '\.\.' names a folder",
    ),
    "absolute sum line": (lambda r: add_line(r, f"{'0' * 64}  /etc/passwd"), "file name '' is not a non-empty string"),
    "sum line listed twice": (
        lambda r: add_line(r, (r / SUMS_NAME).read_text().splitlines()[0]),
        "is listed twice",
    ),
    "malformed sum line": (lambda r: add_line(r, "deadbeef model/x"), r"line \d+: not '<sha256>  <path>'"),
    "upper-case digest": (lambda r: add_line(r, f"{'A' * 64}  model/x"), r"line \d+: not '<sha256>  <path>'"),
    "CRLF sums": (
        lambda r: (r / SUMS_NAME).write_text((r / SUMS_NAME).read_text().replace("\n", "\r\n")),
        "contains a control character",
    ),
    "sums not ending in a newline": (
        lambda r: (r / SUMS_NAME).write_text((r / SUMS_NAME).read_text().rstrip("\n")),
        "not ending in a newline",
    ),
    "empty sums": (lambda r: (r / SUMS_NAME).write_text(""), "empty or not ending in a newline"),
    "sums missing": (lambda r: (r / SUMS_NAME).unlink(), "SHA256SUMS: missing; not a CKD bundle"),
    "sums swapped for a symlink": (lambda r: swap_for_link(r, SUMS_NAME), "SHA256SUMS: cannot open"),
}


@pytest.mark.parametrize("case", sorted(TREE_FAULTS))
def test_tree_faults_refused_by_ckd_and_installer(root, case):
    damage, message = TREE_FAULTS[case]
    damage(root)
    with pytest.raises(CKDError, match=message):
        verify_tree(root)
    result = install_sh(root, "--verify-only")  # bash follows a swapped-in install.sh link to its identical copy
    assert result.returncode == 1, result.stdout
    assert re.search(message, result.stderr) and "refusing to install" in result.stderr, result.stderr


def test_intact_bundle_passes_both(root):
    count, signer = verify_tree(root)
    result = install_sh(root, "--verify-only")
    assert result.returncode == 0 and f"all {count} files verified" in result.stdout and signer is None


def test_tampering_with_consistent_sums_is_caught_only_by_a_signature(root, tmp_path):
    """What checksums do not protect against: whoever changes a file can rewrite SHA256SUMS too."""
    (root / "model" / "ckd_k0.70.onnx").write_bytes(b"evil")
    write_sums(root)
    assert verify_tree(root)[0] > 0  # accepted: the sums are consistent again
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev", "-f", str(key)], check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"dev {key.with_suffix('.pub').read_text()}")
    with pytest.raises(CKDError, match="not signed"):
        verify_tree(root, signers)


def keypair(tmp_path: Path, name: str) -> Path:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def sign(root: Path, key: Path) -> None:
    cmd = ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "ckd-bundle", str(root / SUMS_NAME)]
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_signature_cases(root, tmp_path):
    good, other = keypair(tmp_path, "good"), keypair(tmp_path, "other")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"ops@example,good {good.with_suffix('.pub').read_text()}")
    signers.chmod(0o644)
    sign(root, good)
    assert verify_tree(root, signers)[1] == "ops@example"
    cases = []
    # tampering after signing, with consistent sums
    (root / "bundle.json").write_text("{}\n")
    write_sums(root)
    cases.append((root, "not a valid signature of SHA256SUMS by any key"))
    for path, message in cases:
        with pytest.raises(CKDError, match=message):
            verify_tree(path, signers)
        result = install_sh(path, "--verify-only", "--allowed-signers", str(signers))
        assert result.returncode == 1 and message in result.stderr
    # signed by a key the device does not trust
    (root / SIG_NAME).unlink()
    sign(root, other)
    with pytest.raises(CKDError, match="not a valid signature"):
        verify_tree(root, signers)
    # the signature file swapped for a link to a good one
    sig = root / SIG_NAME
    shutil.move(sig, tmp_path / "sig")
    sig.symlink_to(tmp_path / "sig")
    with pytest.raises(CKDError, match="SHA256SUMS.sig: cannot open"):
        verify_tree(root, signers)
    # the trust anchor must not be changeable by others, nor a link
    sig.unlink()
    signers.chmod(0o666)
    with pytest.raises(CKDError, match="writable by others .* not trusted"):
        verify_tree(root, signers)
    signers.chmod(0o644)
    link = tmp_path / "signers-link"
    link.symlink_to(signers)
    with pytest.raises(CKDError, match="allowed signers must be a regular file, not a symlink"):
        verify_tree(root, link)
    with pytest.raises(CKDError, match="allowed signers file not found"):
        verify_tree(root, tmp_path / "nope")


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"x", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info, data if kind == tarfile.REGTYPE else None


ARCHIVE_FAULTS = {
    "symlink member": ([member("b/x", tarfile.SYMTYPE, link="/etc/passwd")], "member b/x is a symlink"),
    "hard link member": ([member("b/y"), member("b/x", tarfile.LNKTYPE, link="b/y")], "member b/x is a hard link"),
    "FIFO member": ([member("b/p", tarfile.FIFOTYPE)], "member b/p is a special file"),
    "device member": ([member("b/d", tarfile.CHRTYPE)], "member b/d is a special file"),
    "absolute member": ([member("/etc/cron.d/x")], "member: file name '' is not a non-empty string"),
    "parent member": ([member("b/../../x")], r"file name '\.\.' names a folder"),
    "two top folders": ([member("a/x"), member("b/x")], "expected one top folder, found 2"),
    "member twice": ([member("b/x"), member("b/x", data=b"second")], "member b/x appears twice"),
}


@pytest.mark.parametrize("case", sorted(ARCHIVE_FAULTS))
def test_archive_faults_refused_before_anything_is_written(tmp_path, capsys, case):
    members, message = ARCHIVE_FAULTS[case]
    path = tmp_path / "b.tar.gz"
    path.write_bytes(tar_bytes(members))
    assert main(["verify-bundle", str(path), "--extract", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_archive_cases(archive, tmp_path, capsys):
    assert main(["verify-bundle", str(archive), "--extract", str(tmp_path / "b")]) == 0
    assert "files verified" in capsys.readouterr().out and (tmp_path / "b" / "install.sh").is_file()
    assert main(["verify-bundle", str(archive), "--extract", str(tmp_path / "b")]) == 2
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "junk.tar.gz").write_bytes(b"not gzip")
    assert main(["verify-bundle", str(tmp_path / "junk.tar.gz")]) == 2
    assert "not a readable .tar.gz" in capsys.readouterr().err
    # an archive whose content no longer matches its sums is unpacked, refused, and removed again
    root = extract(archive, tmp_path / "t")
    (root / "bundle.json").write_text("{}\n")
    with tarfile.open(tmp_path / "tampered.tar.gz", "w:gz") as tar:
        tar.add(root, arcname=root.name)
    assert main(["verify-bundle", str(tmp_path / "tampered.tar.gz"), "--extract", str(tmp_path / "c")]) == 2
    assert "bundle.json: checksum does not match" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_verifier_runs_on_a_bare_system_python(root, tmp_path):
    """verify.pyz needs nothing but the standard library (the device runs it before the kit is installed)."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3")
    ok = subprocess.run([python, "-I", "-B", str(root / VERIFIER_NAME), str(root)], capture_output=True, text=True)
    assert ok.returncode == 0 and "files verified" in ok.stdout, ok.stderr
    (root / "model" / "evil").symlink_to("/etc/shadow")
    bad = subprocess.run([python, "-I", "-B", str(root / VERIFIER_NAME), str(root)], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("verify: error: ") and "a symlink" in bad.stderr
    assert not list(root.rglob("__pycache__"))  # running it wrote nothing into the bundle


@pytest.mark.parametrize("source", VERIFIER_SOURCES)
def test_verifier_sources_are_python38(source):
    """JetPack 5's python3 is 3.8: the verifier's files parse as 3.8 and use no newer library calls."""
    text = (ROOT / source).read_text()
    ast.parse(text, feature_version=(3, 8))
    for newer in ("removeprefix", "removesuffix", "strict=", "datetime.UTC", "is_relative_to", "functools.cache("):
        assert newer not in text, f"{source}: {newer} needs Python > 3.8"
    if source.endswith(("verify.py", "safe_paths.py")):
        assert "from __future__ import annotations" in text
