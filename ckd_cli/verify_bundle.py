"""`ckd verify-bundle`: check a bundle (folder or .tar.gz) exactly as the device's installer does."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify-bundle",
        help="check a bundle the way install.sh does (files, checksums, signature)",
        description="Check a bundle from `ckd flash` with the verifier install.sh runs: only regular files and "
        "folders, every file listed in SHA256SUMS with a matching sha256, nothing unlisted, and (with "
        "--allowed-signers, or /etc/ckd/allowed_signers when it exists) an ssh signature over SHA256SUMS by a "
        "trusted key. An archive is checked member by member before it is unpacked. Checksums catch corruption; "
        "only a signature checked against keys you already trust catches tampering.",
    )
    from edge.deploy.verify import add_arguments

    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.deploy import verify

    print(verify.run(args))
    return 0
