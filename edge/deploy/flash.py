"""`ckd flash`: copy a bundle to a device over ssh (rsync when present, scp otherwise) and install it there.

The archive travels with a `.sha256` file and the kit's verifier (`ckd-verify.pyz`, from this machine): the
device checks the archive, unpacks it with the verifier (regular files and folders only, every file as listed
in `SHA256SUMS`, signed when the device trusts keys), then `install.sh` verifies again before it touches the
system. Every value that reaches ssh or the remote shell is checked (`edge.deploy.escape`) and quoted.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from ckd.atomic import write_text_atomic
from ckd.errors import CKDError
from ckd.safe_paths import plain_name
from edge.deploy.bundle import REMOTE_VERIFIER, build_verifier, remote_install_script
from edge.deploy.escape import check_port, check_remote_dir, check_target
from edge.manifest import sha256_file


def write_archive_sum(bundle: Path) -> Path:
    """`<bundle>.sha256` in `sha256sum` format, naming the archive by its base name."""
    path = bundle.with_name(bundle.name + ".sha256")
    write_text_atomic(path, f"{sha256_file(bundle)}  {bundle.name}\n")
    return path


def flash_commands(
    bundle: Path,
    target: str,
    verifier: Path,
    remote_dir: str = "ckd-bundles",
    install_args: list[str] | tuple[str, ...] = (),
    port: int | None = None,
) -> list[list[str]]:
    """The commands that copy `bundle` (+ its .sha256 and the verifier) to `target` and install it; none is run."""
    check_target(target)
    check_remote_dir(remote_dir)
    check_port(port)
    plain_name(bundle.name, "--bundle")
    if not bundle.name.endswith(".tar.gz") or verifier.name != REMOTE_VERIFIER:
        raise CKDError(f"{bundle.name}: a bundle is a .tar.gz, sent with {REMOTE_VERIFIER}")
    ssh = ["ssh", *(["-p", str(port)] if port else [])]
    files = [str(bundle), str(bundle.with_name(bundle.name + ".sha256")), str(verifier)]
    if shutil.which("rsync"):
        copy = ["rsync", "-az", "--partial", "-e", " ".join(ssh), *files, f"{target}:{remote_dir}/"]
    else:
        copy = ["scp", *(["-P", str(port)] if port else []), *files, f"{target}:{remote_dir}/"]
    script = remote_install_script(bundle.name, remote_dir, install_args)
    return [
        [*ssh, target, f"mkdir -p -- {shlex.quote(remote_dir)}"],
        copy,
        [*ssh, "-t", target, script],
    ]


def flash(
    bundle: Path,
    target: str,
    remote_dir: str = "ckd-bundles",
    install_args: list[str] | tuple[str, ...] = (),
    port: int | None = None,
) -> None:
    """Copy and install; CKDError naming the failing step."""
    if not bundle.is_file():
        raise CKDError(f"{bundle}: no such bundle")
    write_archive_sum(bundle)
    with tempfile.TemporaryDirectory(prefix="ckd-flash-") as tmp:
        verifier = build_verifier(Path(tmp) / REMOTE_VERIFIER)
        commands = flash_commands(bundle, target, verifier, remote_dir, install_args, port)
        for cmd, step in zip(commands, ("connect", "copy", "install"), strict=True):
            print("+", " ".join(cmd[:6]) + (" …" if len(cmd) > 6 else ""))
            if subprocess.run(cmd).returncode != 0:
                raise CKDError(f"flash to {target}: the {step} step failed (see the output above)")
