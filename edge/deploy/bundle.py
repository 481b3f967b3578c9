"""A versioned deployment bundle: ONNX rungs + manifests, reference outputs, calibration cache, config, the kit's
wheel, `install.sh` and the systemd unit, every file listed in `SHA256SUMS`, packed as one `.tar.gz`.

Layout inside the archive (one top directory `ckd-bundle-<kit version>-<model sha[:8]>/`):
`model/` (export), `model-int8/` (optional Q/DQ export), `wheels/*.whl`, `bundle.json`, `ckd_config.json`,
`requirements-edge.txt`, `install.sh`, `ckd-tracker.service`, `SHA256SUMS`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import edge
from ckd import __version__
from ckd.atomic import atomic_path
from ckd.errors import CKDError
from edge.deploy.scripts import INSTALL_SH, REQUIREMENTS_EDGE, SERVICE_NAME, SERVICE_UNIT
from edge.manifest import MANIFEST_NAME, Manifest, sha256_file
from edge.trt.reference import REFERENCE_NAME, make_reference

SUMS_NAME = "SHA256SUMS"
BUNDLE_FORMAT = "ckd-bundle/1"


def project_root() -> Path:
    """The kit's source tree (the directory holding pyproject.toml), for building its wheel."""
    root = Path(edge.__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise CKDError(f"{root}: no pyproject.toml, cannot build the kit's wheel (pass --wheel FILE)")
    return root


def build_wheel(out_dir: Path) -> Path:
    """`pip wheel --no-deps` of the kit, from a scratch copy so the checkout gets no build/ or egg-info."""
    root = project_root()
    with tempfile.TemporaryDirectory(prefix="ckd-wheel-") as tmp:
        src = Path(tmp) / "src"
        skip = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "tests", "out", "runs")
        shutil.copytree(root, src, ignore=skip)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w"]
        result = subprocess.run([*cmd, str(out_dir)], capture_output=True, text=True)
    wheels = sorted(out_dir.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise CKDError(f"building the kit's wheel failed: {result.stderr.strip().splitlines()[-1:] or '?'}")
    return wheels[-1]


def _copy_export(export: Manifest, dest: Path) -> None:
    """The manifest, its rung files, reference outputs and calibration cache (nothing else in the folder)."""
    dest.mkdir(parents=True)
    names = [MANIFEST_NAME, *(r.file for r in export.rungs)]
    if (export.directory / REFERENCE_NAME).is_file():
        names.append(REFERENCE_NAME)
    cache = (export.calibration or {}).get("cache")
    if cache:
        names.append(cache)
    for name in names:
        src = export.directory / name
        if not src.is_file():
            raise CKDError(f"{src}: listed by the export but missing")
        shutil.copy2(src, dest / name)


def write_sums(root: Path) -> Path:
    """`SHA256SUMS` in `sha256sum` format for every file below `root`, sorted by path."""
    lines = [
        f"{sha256_file(p)}  {p.relative_to(root).as_posix()}"
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != SUMS_NAME
    ]
    path = root / SUMS_NAME
    path.write_text("\n".join(lines) + "\n")
    return path


def verify_sums(root: Path) -> None:
    """Python twin of `install.sh --verify-only`: CKDError naming the first bad, missing or unlisted file."""
    sums = root / SUMS_NAME
    if not sums.is_file():
        raise CKDError(f"{sums}: missing; not a CKD bundle")
    listed = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    for name, digest in listed.items():
        path = root / name
        if not path.is_file():
            raise CKDError(f"{path}: listed in {SUMS_NAME} but missing")
        if sha256_file(path) != digest:
            raise CKDError(f"{path}: checksum does not match {SUMS_NAME}; refusing this bundle")
    extra = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != SUMS_NAME)
    unlisted = [n for n in extra if n not in listed]
    if unlisted:
        raise CKDError(f"{root / unlisted[0]}: not listed in {SUMS_NAME}; refusing this bundle")


def _model_tag(checkpoint_sha256: str) -> str:
    """8 hex digits naming the model: the checkpoint hash, or a hash of a non-hex source tag (`random:nano:0`)."""
    if re.fullmatch(r"[0-9a-f]{8,}", checkpoint_sha256):
        return checkpoint_sha256[:8]
    return hashlib.sha256(checkpoint_sha256.encode()).hexdigest()[:8]


DEFAULT_RUN_ARGS = (
    "--rgb csi://0 --tir 'v4l2:///dev/video1?format=GRAY16_LE' --backend tensorrt --model-dir @PREFIX@/model "
    "--out /var/lib/ckd/run"
)


def make_bundle(
    export_dir: str | Path,
    out: str | Path,
    *,
    int8_dir: str | Path | None = None,
    wheel: str | Path | None = None,
    build_args: str = "",
    run_args: str = "",
) -> Path:
    """Pack a bundle to `out` (.tar.gz, written atomically); returns its path.

    `run_args` are the `ckd run` arguments of the service (default: CSI camera 0 + a 16-bit thermal camera
    on /dev/video1, the TensorRT backend on the installed model; set the sensors and `--init` for the
    rig with `ckd flash --run-args`); `build_args` are extra `ckd build` arguments (e.g. `--precision fp16`).
    """
    export = Manifest.load(export_dir)
    if not (export.directory / REFERENCE_NAME).is_file():
        make_reference(export)  # the device's fidelity gate needs it and may lack ONNX Runtime
    int8 = Manifest.load(int8_dir) if int8_dir else None
    out = Path(out)
    top = f"ckd-bundle-{__version__}-{_model_tag(export.checkpoint_sha256)}"
    with tempfile.TemporaryDirectory(prefix="ckd-bundle-") as tmp:
        root = Path(tmp) / top
        _copy_export(export, root / "model")
        if int8 is not None:
            _copy_export(int8, root / "model-int8")
            build_args = f"--int8 @PREFIX@/model-int8 {build_args}".strip()
        (root / "wheels").mkdir()
        if wheel:
            shutil.copy2(wheel, root / "wheels" / Path(wheel).name)
        else:
            build_wheel(root / "wheels")
        (root / "ckd_config.json").write_text(json.dumps(export.config, indent=2) + "\n")
        (root / "requirements-edge.txt").write_text(REQUIREMENTS_EDGE)
        run_args = run_args or DEFAULT_RUN_ARGS
        unit = SERVICE_UNIT.replace("@BUILD_ARGS@", build_args).replace("@RUN_ARGS@", run_args)
        (root / SERVICE_NAME).write_text(unit)
        (root / "install.sh").write_text(INSTALL_SH)
        (root / "install.sh").chmod(0o755)
        info = {
            "format": BUNDLE_FORMAT,
            "kit_version": __version__,
            "checkpoint_sha256": export.checkpoint_sha256,
            "keep_ratios": list(export.keep_ratios),
            "int8": int8 is not None,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "service": {"build_args": build_args, "run_args": run_args},
        }
        (root / "bundle.json").write_text(json.dumps(info, indent=2) + "\n")
        write_sums(root)
        with atomic_path(out) as partial, tarfile.open(partial, "w:gz") as tar:
            tar.add(root, arcname=top)
    return out


def remote_install_script(bundle_name: str, remote_dir: str, install_args: str = "") -> str:
    """Shell run on the device: check the archive's checksum, unpack, run `install.sh` (which checks every file)."""
    q = shlex.quote
    top = bundle_name.removesuffix(".tar.gz")
    return (
        f"set -e; cd {q(remote_dir)}; "
        f"sha256sum --check --strict {q(bundle_name + '.sha256')} || "
        f"{{ echo 'bundle archive checksum mismatch; refusing to install' >&2; exit 1; }}; "
        f"rm -rf {q(top)} && mkdir {q(top)} && tar -xzf {q(bundle_name)} -C {q(top)} --strip-components=1; "
        f'$([ "$(id -u)" = 0 ] || echo sudo) ./{q(top)}/install.sh {install_args}'.strip()
    )
