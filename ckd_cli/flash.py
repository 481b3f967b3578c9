"""`ckd flash`: make a versioned bundle for a Jetson and copy + install it over ssh, or just write the bundle."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flash",
        help="bundle the model and kit for a Jetson and install it over ssh",
        description="Pack the export (ONNX rungs, manifests, reference outputs, calibration cache), the model config, "
        "the kit's wheel, install.sh and a systemd unit into one checksummed .tar.gz. With --target, copy it to the "
        "device (rsync or scp over ssh), verify the archive there and run install.sh, which verifies every file, "
        "makes a venv over the system TensorRT and starts the service (engines are built on its first start). "
        "With only --bundle, just write the file.",
    )
    p.add_argument("--onnx", required=True, metavar="DIR", help="export directory (manifest.json + ckd_k*.onnx)")
    p.add_argument("--int8", default=None, metavar="DIR", help="Q/DQ export from `ckd quantize` to ship as well")
    p.add_argument("--target", default=None, metavar="USER@HOST", help="device to install on over ssh")
    p.add_argument("--bundle", default=None, metavar="OUT.tar.gz", help="where to write the bundle (kept)")
    p.add_argument("--port", type=int, default=None, help="ssh port (default 22)")
    p.add_argument(
        "--remote-dir", default="ckd-bundles", help="directory on the device for bundles (default ~/ckd-bundles)"
    )
    p.add_argument(
        "--install-args", default="", help="extra install.sh arguments, e.g. '--prefix /opt/ckd --no-service'"
    )
    p.add_argument("--wheel", default=None, metavar="FILE", help="ship this kit wheel instead of building one")
    p.add_argument(
        "--build-args", default="", help="extra `ckd build` arguments for the service, e.g. '--precision fp16'"
    )
    p.add_argument(
        "--run-args",
        default="",
        help="`ckd run` arguments for the service (default: tensorrt backend, installed model)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from ckd.errors import CKDError
    from edge.deploy.bundle import make_bundle
    from edge.deploy.flash import flash, write_archive_sum

    if not args.target and not args.bundle:
        raise CKDError("give --target USER@HOST to install, or --bundle OUT.tar.gz to only write the bundle")
    with tempfile.TemporaryDirectory(prefix="ckd-flash-") as tmp:
        out = Path(args.bundle) if args.bundle else Path(tmp) / "ckd-bundle.tar.gz"
        if not out.name.endswith(".tar.gz"):
            raise CKDError(f"--bundle {out}: the name must end in .tar.gz")
        make_bundle(
            args.onnx,
            out,
            int8_dir=args.int8,
            wheel=args.wheel,
            build_args=args.build_args,
            run_args=args.run_args,
        )
        print(f"bundle: {out} ({out.stat().st_size / 1e6:.1f} MB), checksum {write_archive_sum(out).name}")
        if args.target:
            flash(out, args.target, args.remote_dir, args.install_args, args.port)
            print(f"installed on {args.target}")
    return 0
