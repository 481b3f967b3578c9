"""The bundle verifier: one implementation for `ckd verify-bundle`, `ckd flash` and the device's `install.sh`.

A bundle folder is accepted only when every entry below it is a folder or a regular file (no symlink, FIFO,
socket or device), `SHA256SUMS` is well formed (`<sha256>  <path>` lines; every path component a plain file
name, see `ckd.safe_paths`; no nested `SHA256SUMS`; no path listed twice), every listed file matches its
sha256, and every regular file is listed. When an `allowed_signers` file is given (or, from the command line,
`/etc/ckd/allowed_signers` exists), `SHA256SUMS.sig` must be an `ssh-keygen -Y sign` signature over
`SHA256SUMS` (namespace `ckd-bundle`) by a key listed there.

An archive is checked member by member before anything is written (regular files and folders under one top
folder, plain names, no member twice), extracted without that top folder, then verified as a folder.

Checksums inside a bundle detect corruption, not tampering: whoever can change the bundle can change its
`SHA256SUMS` too. Only the signature, checked against keys the device already trusts, detects tampering.

Standard library only, Python 3.8 clean: the bundle carries this module (with `ckd.errors` and
`ckd.safe_paths`) as `verify.pyz`, which the installer runs with the device's system python3.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ckd.errors import CKDError
from ckd.safe_paths import kind_of, plain_name

SUMS_NAME = "SHA256SUMS"
SIG_NAME = "SHA256SUMS.sig"
NAMESPACE = "ckd-bundle"
DEFAULT_SIGNERS = "/etc/ckd/allowed_signers"
_SUM_LINE = re.compile(r"([0-9a-f]{64})  ([^\n]+)")


def sha256_regular(path: Path) -> str:
    """sha256 of a regular file, opened without following a symlink (a swapped-in link or FIFO is refused)."""
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise CKDError(f"{path}: cannot open ({exc.strerror}); refusing this bundle") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise CKDError(f"{path}: a {kind_of(mode)}, not a regular file; refusing this bundle")
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def relative_path(text: str, source: str) -> str:
    """A path inside the bundle: `/`-separated plain file names (so never absolute, never `..`)."""
    for part in text.split("/"):
        plain_name(part, source)
    return text


def parse_sums(text: str, source: str = SUMS_NAME) -> dict[str, str]:
    """`SHA256SUMS` text -> {relative path: sha256}; any malformed, unsafe, nested or repeated line is refused."""
    if not text.endswith("\n"):
        raise CKDError(f"{source}: empty or not ending in a newline; refusing this bundle")
    listed: dict[str, str] = {}
    for n, line in enumerate(text[:-1].split("\n"), 1):
        m = _SUM_LINE.fullmatch(line)
        if not m:
            raise CKDError(f"{source} line {n}: not '<sha256>  <path>': {line[:80]!r}; refusing this bundle")
        digest, rel = m.groups()
        relative_path(rel, f"{source} line {n}")
        if rel.split("/")[-1] in (SUMS_NAME, SIG_NAME):
            raise CKDError(f"{source} line {n}: lists another {rel}; refusing this bundle")
        if rel in listed:
            raise CKDError(f"{source} line {n}: {rel} is listed twice; refusing this bundle")
        listed[rel] = digest
    return listed


def tree_files(root: Path) -> list[str]:
    """Relative paths of the regular files below `root`; CKDError on anything that is not a file or folder."""
    found = []
    for top, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = Path(top) / name
            mode = os.lstat(str(path)).st_mode
            if stat.S_ISREG(mode):
                found.append(path.relative_to(root).as_posix())
            elif not stat.S_ISDIR(mode):
                raise CKDError(f"{path}: a {kind_of(mode)} in the bundle; only regular files and folders are allowed")
    return sorted(found)


def principals(allowed_signers: Path) -> list[str]:
    """The principals of an `allowed_signers` file (first field of each line, comma-separated)."""
    names = []
    for line in allowed_signers.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names += [p for p in line.split()[0].strip('"').split(",") if p]
    return names


def check_signers_file(path: Path) -> None:
    """The trust anchor must be a regular file only root or its owner can change."""
    try:
        st = os.lstat(str(path))
    except FileNotFoundError:
        raise CKDError(f"{path}: allowed signers file not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise CKDError(f"{path}: allowed signers must be a regular file, not a {kind_of(st.st_mode)}")
    if st.st_mode & 0o022 or st.st_uid not in (0, os.getuid()):
        raise CKDError(f"{path}: writable by others or owned by another user (uid {st.st_uid}); not trusted")


def check_signature(root: Path, allowed_signers: Path) -> str:
    """Verify `SHA256SUMS.sig` over `SHA256SUMS` with `ssh-keygen -Y verify`; returns the signer's principal."""
    check_signers_file(allowed_signers)
    sig = root / SIG_NAME
    if not os.path.lexists(str(sig)):
        raise CKDError(f"{root}: not signed (no {SIG_NAME}), but {allowed_signers} requires a signature")
    sha256_regular(sig)  # a regular file, not a link to one
    if shutil.which("ssh-keygen") is None:
        raise CKDError("ssh-keygen not found: cannot check the bundle's signature (install openssh-client)")
    data = (root / SUMS_NAME).read_bytes()
    for who in principals(allowed_signers):
        cmd = ["ssh-keygen", "-Y", "verify", "-f", str(allowed_signers), "-I", who, "-n", NAMESPACE, "-s", str(sig)]
        if subprocess.run(cmd, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return who
    raise CKDError(f"{sig}: not a valid signature of {SUMS_NAME} by any key in {allowed_signers}; refusing this bundle")


def verify_tree(root: str | Path, allowed_signers: str | Path | None = None) -> tuple[int, str | None]:
    """Verify an unpacked bundle; returns (number of files checked, signer or None). CKDError on any problem."""
    root = Path(root)
    try:
        mode = os.lstat(str(root)).st_mode
    except FileNotFoundError:
        raise CKDError(f"{root}: no such bundle folder") from None
    if not stat.S_ISDIR(mode):
        raise CKDError(f"{root}: a {kind_of(mode)}, not a bundle folder")
    sums = root / SUMS_NAME
    if not os.path.lexists(str(sums)):
        raise CKDError(f"{sums}: missing; not a CKD bundle")
    sha256_regular(sums)  # refuses a symlink or FIFO in its place
    try:
        listed = parse_sums(sums.read_bytes().decode("utf-8"), str(sums))  # no newline translation
    except UnicodeDecodeError:
        raise CKDError(f"{sums}: not UTF-8 text; refusing this bundle") from None
    signer = check_signature(root, Path(allowed_signers)) if allowed_signers else None
    present = set(tree_files(root)) - {SUMS_NAME, SIG_NAME}
    for rel, digest in listed.items():
        if rel not in present:
            raise CKDError(f"{root / rel}: listed in {SUMS_NAME} but missing; refusing this bundle")
        if sha256_regular(root / rel) != digest:
            raise CKDError(f"{root / rel}: checksum does not match {SUMS_NAME}; refusing this bundle")
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise CKDError(f"{root / unlisted[0]}: not listed in {SUMS_NAME}; refusing this bundle")
    return len(listed), signer


def check_archive(path: str | Path) -> list[tarfile.TarInfo]:
    """The members of a bundle archive, each a regular file or folder with a safe name under one top folder."""
    path = Path(path)
    try:
        with tarfile.open(str(path), "r:gz") as tar:
            members = tar.getmembers()
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise CKDError(f"{path}: not a readable .tar.gz ({exc})") from None
    tops, seen = set(), set()
    for m in members:
        name = m.name[:-1] if m.name.endswith("/") else m.name
        relative_path(name, f"{path} member")
        if not (m.isreg() or m.isdir()):
            what = "symlink" if m.issym() else "hard link" if m.islnk() else "special file"
            raise CKDError(f"{path}: member {name} is a {what}; only regular files and folders are allowed")
        if name in seen:
            raise CKDError(f"{path}: member {name} appears twice; refusing this bundle")
        seen.add(name)
        tops.add(name.split("/")[0])
    if len(tops) != 1:
        raise CKDError(f"{path}: expected one top folder, found {len(tops)}; not a CKD bundle")
    return members


def extract_archive(path: str | Path, dest: str | Path) -> Path:
    """Check, then unpack the archive's top folder into the new folder `dest` (regular files and folders only)."""
    path, dest = Path(path), Path(dest)
    members = check_archive(path)
    if os.path.lexists(str(dest)):
        raise CKDError(f"{dest}: already exists; unpack into a new folder")
    try:
        os.mkdir(str(dest), 0o755)
        with tarfile.open(str(path), "r:gz") as tar:
            for m in members:
                parts = m.name.rstrip("/").split("/")[1:]
                if not parts:
                    continue
                target = dest.joinpath(*parts)
                if m.isdir():
                    target.mkdir(0o755, parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(0o755, parents=True, exist_ok=True)
                mode = 0o755 if m.mode & 0o111 else 0o644
                fd = os.open(str(target), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                with os.fdopen(fd, "wb") as out, tar.extractfile(m) as src:
                    shutil.copyfileobj(src, out)
    except (OSError, EOFError, tarfile.TarError) as exc:
        shutil.rmtree(str(dest), ignore_errors=True)
        raise CKDError(f"{path}: cannot unpack into {dest} ({exc}); refusing this bundle") from None
    return dest


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The verifier's options, shared by `ckd verify-bundle` and `python3 verify.pyz`."""
    p.add_argument("bundle", help="bundle folder, or the .tar.gz archive (checked, unpacked, then verified)")
    p.add_argument(
        "--allowed-signers",
        default=None,
        metavar="FILE",
        help=f"require a signature by a key in this ssh allowed_signers file (default: {DEFAULT_SIGNERS} if it "
        "exists, else no signature is required)",
    )
    p.add_argument("--extract", default=None, metavar="DIR", help="archive: unpack into this new folder and keep it")


def run(args: argparse.Namespace) -> str:
    """Verify what `args` names; returns a one-line summary. CKDError on any problem."""
    signers = args.allowed_signers or (DEFAULT_SIGNERS if os.path.lexists(DEFAULT_SIGNERS) else None)
    bundle = Path(args.bundle)
    if os.path.isdir(str(bundle)):
        if args.extract:
            raise CKDError("--extract applies to an archive, not a folder")
        count, signer = verify_tree(bundle, signers)
    else:
        if not bundle.is_file():
            raise CKDError(f"{bundle}: no such bundle")
        with tempfile.TemporaryDirectory(prefix="ckd-verify-") as tmp:
            dest = Path(args.extract) if args.extract else Path(tmp) / "bundle"
            extracted = extract_archive(bundle, dest)
            try:
                count, signer = verify_tree(extracted, signers)
            except BaseException:
                shutil.rmtree(str(extracted), ignore_errors=True)  # nothing unverified is left behind
                raise
    return f"{bundle}: all {count} files verified" + (f", signed by {signer}" if signer else "")


def main(argv: list[str] | None = None) -> int:
    """`python3 verify.pyz [--allowed-signers FILE] [--extract DIR] BUNDLE`: exit 0 when verified, 1 otherwise."""
    p = argparse.ArgumentParser(prog="verify.pyz", description=__doc__.split("\n\n")[1])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        print(run(args))
    except CKDError as exc:
        print(f"verify: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
