"""`ckd flash`: make a versioned bundle for a Jetson and copy + install it over ssh, or just write the bundle."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flash",
        help="bundle the model and kit for a Jetson and install it over ssh",
        description="Pack the export (ONNX rungs, manifests, reference outputs, calibration cache), the model config, "
        "the kit's wheel and verifier, install.sh and a systemd unit into one checksummed .tar.gz (signed with "
        "--sign-key). With --target, copy it to the device (rsync or scp over ssh), check and unpack it there with "
        "the kit's verifier and run install.sh, which verifies every file again, installs root-owned code and model "
        "with a venv over the system TensorRT, and starts the service as an unprivileged system user (engines are "
        "built on its first start). With only --bundle, just write the file.",
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
    p.add_argument(
        "--trt",
        default="all",
        metavar="VERSIONS",
        help="TensorRT generations the bundle must carry graphs for: 8.5 (JetPack 5.1.x), 8.6 (JetPack 6.0), 10 "
        "(JetPack 6.1/6.2), a comma list, or all (default). Each is checked offline; a bundle whose graphs "
        "TensorRT would refuse is not written",
    )
    p.add_argument("--wheel", default=None, metavar="FILE", help="ship this kit wheel instead of building one")
    p.add_argument(
        "--sign-key",
        default=None,
        metavar="KEY",
        help="ssh private key (e.g. ~/.ssh/id_ed25519) that signs SHA256SUMS; a device with "
        "/etc/ckd/allowed_signers accepts only bundles signed by a key listed there",
    )
    p.add_argument(
        "--build-args", default="", help="extra `ckd build` arguments for the service, e.g. '--precision fp16'"
    )
    p.add_argument(
        "--run-args",
        default=None,
        help="`ckd run` arguments for the service (default: CSI camera 0 + thermal /dev/video1, tensorrt backend, "
        "installed model, output in /var/lib/ckd/run); @PREFIX@ is the install prefix",
    )
    p.set_defaults(func=run)


def check_command_args(command: str, words: list[str], what: str) -> None:
    """Refuse service arguments the real `ckd <command>` parser would refuse (at flash time, not on the device)."""
    import contextlib
    import io

    from ckd.errors import CKDError
    from ckd_cli.main import build_parser

    argv = [command, *(w.replace("@PREFIX@", "/opt/ckd") for w in words)]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit:
        last = (err.getvalue().strip().splitlines() or ["?"])[-1]
        raise CKDError(f"{what}: `ckd {command}` would refuse them ({last})") from None


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from ckd.errors import CKDError
    from edge.deploy.bundle import DEFAULT_RUN_ARGS, make_bundle
    from edge.deploy.escape import check_port, check_remote_dir, check_target, split_args
    from edge.deploy.flash import flash, write_archive_sum
    from edge.manifest import Manifest
    from edge.trt.targets import parse_generations

    if not args.target and not args.bundle:
        raise CKDError("give --target USER@HOST to install, or --bundle OUT.tar.gz to only write the bundle")
    if args.target:  # checked before minutes of packing
        check_target(args.target)
        check_remote_dir(args.remote_dir)
        check_port(args.port)
    build_words = split_args(args.build_args, "--build-args")
    run_words = DEFAULT_RUN_ARGS if args.run_args is None else split_args(args.run_args, "--run-args")
    install_words = split_args(args.install_args, "--install-args")
    check_command_args("build", ["--onnx", "@PREFIX@/model", *build_words], "--build-args")
    check_command_args("run", list(run_words), "--run-args")
    with tempfile.TemporaryDirectory(prefix="ckd-flash-") as tmp:
        out = Path(args.bundle) if args.bundle else Path(tmp) / "ckd-bundle.tar.gz"
        if not out.name.endswith(".tar.gz"):
            raise CKDError(f"--bundle {out}: the name must end in .tar.gz")
        make_bundle(
            args.onnx,
            out,
            int8_dir=args.int8,
            wheel=args.wheel,
            build_args=build_words,
            run_args=run_words,
            sign_key=args.sign_key,
            tensorrt=parse_generations(args.trt),
        )
        note = Manifest.load(args.int8).gate_note() if args.int8 else None
        if note:
            print(f"{note}; not shipped")
        print(f"bundle: {out} ({out.stat().st_size / 1e6:.1f} MB), checksum {write_archive_sum(out).name}")
        if args.target:
            flash(out, args.target, args.remote_dir, install_words, args.port)
            print(f"installed on {args.target}")
    return 0
