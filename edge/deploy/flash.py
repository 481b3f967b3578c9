"""`ckd flash`: copy a bundle to a device over ssh (rsync when present, scp otherwise) and install it there.

The archive travels with a `.sha256` file; the device checks it before unpacking, then `install.sh` checks
every file inside against `SHA256SUMS` before it touches the system.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ckd.atomic import write_text_atomic
from ckd.errors import CKDError
from edge.deploy.bundle import remote_install_script
from edge.manifest import sha256_file

_TARGET = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9._:-]+$")


def write_archive_sum(bundle: Path) -> Path:
    """`<bundle>.sha256` in `sha256sum` format, naming the archive by its base name."""
    path = bundle.with_name(bundle.name + ".sha256")
    write_text_atomic(path, f"{sha256_file(bundle)}  {bundle.name}\n")
    return path


def flash_commands(
    bundle: Path, target: str, remote_dir: str = "ckd-bundles", install_args: str = "", port: int | None = None
) -> list[list[str]]:
    """The commands that copy `bundle` (+ its .sha256) to `target` and install it; nothing is run here."""
    if not _TARGET.match(target):
        raise CKDError(f"--target {target!r}: expected user@host or host")
    ssh = ["ssh", *(["-p", str(port)] if port else [])]
    files = [str(bundle), str(bundle.with_name(bundle.name + ".sha256"))]
    if shutil.which("rsync"):
        rsh = " ".join(ssh)
        copy = ["rsync", "-az", "--partial", "-e", rsh, *files, f"{target}:{remote_dir}/"]
    else:
        copy = ["scp", *(["-P", str(port)] if port else []), *files, f"{target}:{remote_dir}/"]
    script = remote_install_script(bundle.name, remote_dir, install_args)
    return [
        [*ssh, target, f"mkdir -p {remote_dir}"],
        copy,
        [*ssh, "-t", target, script],
    ]


def flash(
    bundle: Path, target: str, remote_dir: str = "ckd-bundles", install_args: str = "", port: int | None = None
) -> None:
    """Copy and install; CKDError naming the failing step."""
    if not bundle.is_file():
        raise CKDError(f"{bundle}: no such bundle")
    write_archive_sum(bundle)
    for cmd, step in zip(
        flash_commands(bundle, target, remote_dir, install_args, port), ("connect", "copy", "install"), strict=True
    ):
        print("+", " ".join(cmd[:6]) + (" …" if len(cmd) > 6 else ""))
        if subprocess.run(cmd).returncode != 0:
            raise CKDError(f"flash to {target}: the {step} step failed (see the output above)")
