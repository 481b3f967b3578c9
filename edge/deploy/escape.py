"""Values that reach a systemd unit, a shell or ssh: quoted for whatever reads them, or refused in one line."""

from __future__ import annotations

import re
import shlex

from ckd.errors import CKDError

# Placeholders the installer fills in; only @PREFIX@ may appear in user-given service arguments.
ALLOWED_PLACEHOLDERS = {"@PREFIX@"}
_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+")  # words systemd reads literally once % and $ are doubled
_TARGET = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])")
_REMOTE_DIR = re.compile(r"[A-Za-z0-9_.+/][A-Za-z0-9_.+/-]*")


def no_control_chars(text: str, what: str) -> str:
    """`text` unless it holds a control character (a newline would add lines to a unit file or a script)."""
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise CKDError(f"{what}: contains the control character {bad!r}; give the value on one line")
    return text


def split_args(text: str, what: str) -> list[str]:
    """The words of an arguments option (`--run-args '...'`, shell quoting); bad quoting or characters refused."""
    no_control_chars(text, what)
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise CKDError(f"{what} {text!r}: {exc}") from None


def systemd_word(word: str, what: str) -> str:
    """One argument of an `ExecStart=` line: `%` (specifiers) and `$` (variables) doubled, quoted when needed.

    Control characters are refused (a newline would add unit lines), and so are installer placeholders
    other than @PREFIX@."""
    no_control_chars(word, what)
    unknown = sorted(set(re.findall(r"@[A-Za-z_]+@", word)) - ALLOWED_PLACEHOLDERS)
    if unknown:
        raise CKDError(f"{what}: {', '.join(unknown)} is filled in by the installer; only @PREFIX@ may be used")
    text = word.replace("%", "%%").replace("$", "$$")
    if _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_command(words: list[str], what: str) -> str:
    return " ".join(systemd_word(w, what) for w in words)


def check_target(target: str) -> str:
    """`user@host` or `host` for ssh: no leading `-` (an ssh option), no shell or ssh metacharacters."""
    if not _TARGET.fullmatch(target):
        raise CKDError(f"--target {target!r}: expected user@host or host (letters, digits, . _ -; not starting with -)")
    return target


def check_remote_dir(path: str) -> str:
    """A folder on the device for bundles: letters, digits and . _ + - /, not starting with `-`."""
    if not _REMOTE_DIR.fullmatch(path) or ".." in path.split("/"):
        raise CKDError(f"--remote-dir {path!r}: use letters, digits and . _ + - / only, no '..', not starting with -")
    return path


def check_port(port: int | None) -> int | None:
    if port is not None and not 0 < port < 65536:
        raise CKDError(f"--port {port}: not a TCP port (1-65535)")
    return port
