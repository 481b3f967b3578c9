"""A versioned deployment bundle: ONNX rungs + manifests, reference outputs, calibration cache, config, the kit's
wheel, its verifier, `install.sh` and the systemd unit, every file listed in `SHA256SUMS`, packed as one `.tar.gz`.

Layout inside the archive (one top directory `ckd-bundle-<kit version>-<model sha[:8]>/`):
`model/` (export), `model-int8/` (optional Q/DQ export), `wheels/*.whl`, `bundle.json`, `ckd_config.json`,
`requirements-edge.txt`, `verify.pyz`, `install.sh`, `ckd-tracker.service`, `SHA256SUMS` and, when signed,
`SHA256SUMS.sig` (`ssh-keygen -Y sign`, namespace `ckd-bundle`).
"""

from __future__ import annotations

import dataclasses
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
import zipfile
from collections.abc import Sequence
from pathlib import Path

import edge
from ckd import __version__
from ckd.atomic import atomic_path
from ckd.errors import CKDError
from ckd.safe_paths import file_in
from edge.deploy.escape import systemd_command
from edge.deploy.scripts import INSTALL_SH, REQUIREMENTS_EDGE, SERVICE_NAME, SERVICE_UNIT, STATE_DIR
from edge.deploy.verify import NAMESPACE, SIG_NAME, SUMS_NAME, verify_tree
from edge.export import check_rung
from edge.manifest import MANIFEST_NAME, Manifest, sha256_file
from edge.trt.onnx_support import GENERATIONS
from edge.trt.reference import make_reference

BUNDLE_FORMAT = "ckd-bundle/1"
VERIFIER_NAME = "verify.pyz"
REMOTE_VERIFIER = "ckd-verify.pyz"  # the same verifier, copied beside the archive by `ckd flash`
# The verifier and all it imports: standard library plus these kit modules (tested to run on a bare python3).
VERIFIER_SOURCES = (
    "ckd/__init__.py",
    "ckd/errors.py",
    "ckd/safe_paths.py",
    "edge/__init__.py",
    "edge/deploy/__init__.py",
    "edge/deploy/verify.py",
)
# `ckd run` of the default service: CSI camera 0 + a 16-bit thermal camera on /dev/video1, TensorRT on the
# installed model, output in the service's state folder.
DEFAULT_RUN_ARGS = (
    *("--rgb", "csi://0", "--tir", "v4l2:///dev/video1?format=GRAY16_LE", "--backend", "tensorrt"),
    *("--model-dir", "@PREFIX@/model", "--out", f"{STATE_DIR}/run"),
)


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


def check_wheel(wheel: str | Path) -> Path:
    """`--wheel`: an existing wheel of this kit (it holds the CLI and the verifier)."""
    path = Path(wheel)
    if not path.is_file():
        raise CKDError(f"--wheel {path}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise CKDError(f"--wheel {path}: not a wheel ({exc})") from None
    if not path.name.endswith(".whl") or not {"ckd_cli/main.py", "edge/deploy/verify.py"} <= names:
        raise CKDError(f"--wheel {path}: not a wheel of this kit (needs ckd_cli/main.py and edge/deploy/verify.py)")
    return path


def build_verifier(out: Path) -> Path:
    """`verify.pyz`: the kit's bundle verifier as a zip application any python3 >= 3.8 runs (`python3 verify.pyz`)."""
    root = Path(edge.__file__).resolve().parents[1]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("__main__.py", "import sys\nfrom edge.deploy.verify import main\nsys.exit(main())\n")
        for rel in VERIFIER_SOURCES:
            z.write(root / rel, rel)
    return out


def check_export(export: Manifest, precision: str, what: str) -> None:
    """Every rung a valid ONNX graph with the manifest's tensors, and at least one rung of `precision`."""
    if not any(r.precision == precision for r in export.rungs):
        raise CKDError(f"{what} {export.directory}: no {precision} rungs, nothing to ship")
    for rung in export.rungs:
        check_rung(export, rung)


def _check_int8(export: Manifest, int8: Manifest) -> None:
    if int8.checkpoint_sha256 != export.checkpoint_sha256 or int8.inputs != export.inputs:
        raise CKDError(f"--int8 {int8.directory}: quantized from another model than --onnx {export.directory}")
    fp32 = {round(r.keep_ratio, 6) for r in export.rungs if r.precision == "fp32"}
    extra = sorted(r.keep_ratio for r in int8.rungs if round(r.keep_ratio, 6) not in fp32)
    if extra:
        raise CKDError(f"--int8 {int8.directory}: keep ratios {extra} have no fp32 rung in --onnx to build beside")


def _copy_export(export: Manifest, dest: Path) -> Manifest:
    """The manifest and every file it lists (rungs, calibration cache); returns the copy's manifest."""
    dest.mkdir(parents=True)
    for name in [MANIFEST_NAME, *export.files()]:
        shutil.copyfile(file_in(export.directory, name, MANIFEST_NAME), dest / name)
    return dataclasses.replace(export, directory=dest)


def _copy_graphs(export: Manifest, dest: Path, tensorrt: tuple[str, ...]) -> None:
    """For every TensorRT generation with graphs of its own (trt8.5/), that sub-export into `dest`, with reference
    outputs made from the copied rungs; every folder is checked offline for the generations it serves (CKDError:
    TensorRT would refuse a node)."""
    from edge.trt.lint import require_parseable
    from edge.trt.targets import folders_for

    for gen, folder in folders_for(export.directory, tensorrt).items():
        graphs = Manifest.load(folder)
        require_parseable(graphs, (gen,))
        if folder != export.directory and not (dest / folder.name).is_dir():
            copied = _copy_export(graphs, dest / folder.name)
            if all(r.precision == "fp32" for r in graphs.rungs):
                make_reference(copied)


def write_sums(root: Path) -> Path:
    """`SHA256SUMS` in `sha256sum` format for every file below `root`, sorted by path."""
    lines = [
        f"{sha256_file(p)}  {p.relative_to(root).as_posix()}"
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in (SUMS_NAME, SIG_NAME)
    ]
    path = root / SUMS_NAME
    path.write_text("\n".join(lines) + "\n")
    return path


def sign_sums(root: Path, key: str | Path) -> Path:
    """Sign `SHA256SUMS` with an ssh private key (`ssh-keygen -Y sign`); writes `SHA256SUMS.sig`."""
    key = Path(key)
    if not key.is_file():
        raise CKDError(f"--sign-key {key}: no such key file")
    if shutil.which("ssh-keygen") is None:
        raise CKDError("ssh-keygen not found: it signs the bundle (install openssh-client)")
    cmd = ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(root / SUMS_NAME)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        raise CKDError(f"--sign-key {key}: signing failed ({last})")
    return root / SIG_NAME


def _model_tag(checkpoint_sha256: str) -> str:
    """8 hex digits naming the model: the checkpoint hash, or a hash of a non-hex source tag (`random:nano:0`)."""
    if re.fullmatch(r"[0-9a-f]{8,}", checkpoint_sha256):
        return checkpoint_sha256[:8]
    return hashlib.sha256(checkpoint_sha256.encode()).hexdigest()[:8]


def _reset_owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def make_bundle(
    export_dir: str | Path,
    out: str | Path,
    *,
    int8_dir: str | Path | None = None,
    wheel: str | Path | None = None,
    build_args: Sequence[str] = (),
    run_args: Sequence[str] = DEFAULT_RUN_ARGS,
    sign_key: str | Path | None = None,
    tensorrt: tuple[str, ...] = GENERATIONS,
) -> Path:
    """Pack a bundle to `out` (.tar.gz, written atomically); returns its path.

    `run_args` are the words of the service's `ckd run` command (default `DEFAULT_RUN_ARGS`; set the sensors
    and `--init` for the rig with `ckd flash --run-args`); `build_args` are extra `ckd build` words (e.g.
    `--precision fp16`). `@PREFIX@` in them becomes the install prefix; every word is escaped for the unit
    file (`edge.deploy.escape`). `sign_key`: an ssh private key that signs `SHA256SUMS`. `tensorrt`: the
    TensorRT generations the bundle serves (graphs for each, checked offline).
    """
    export = Manifest.load(export_dir)
    check_export(export, "fp32", "--onnx")
    int8 = Manifest.load(int8_dir) if int8_dir else None
    if int8 is not None:
        check_export(int8, "int8", "--int8")
        _check_int8(export, int8)
    wheel = check_wheel(wheel) if wheel else None
    build_words = [*(["--int8", "@PREFIX@/model-int8"] if int8 else []), *build_args]
    unit = SERVICE_UNIT.replace("@BUILD_ARGS@", systemd_command(build_words, "--build-args"))
    unit = unit.replace("@RUN_ARGS@", systemd_command(list(run_args), "--run-args"))
    out = Path(out)
    top = f"ckd-bundle-{__version__}-{_model_tag(export.checkpoint_sha256)}"
    with tempfile.TemporaryDirectory(prefix="ckd-bundle-") as tmp:
        root = Path(tmp) / top
        make_reference(_copy_export(export, root / "model"))  # the device's fidelity gate, from these very rungs
        _copy_graphs(export, root / "model", tensorrt)
        if int8 is not None:
            _copy_export(int8, root / "model-int8")
            _copy_graphs(int8, root / "model-int8", tensorrt)
        (root / "wheels").mkdir()
        if wheel:
            shutil.copyfile(wheel, root / "wheels" / wheel.name)
        else:
            build_wheel(root / "wheels")
        (root / "ckd_config.json").write_text(json.dumps(export.config, indent=2) + "\n")
        (root / "requirements-edge.txt").write_text(REQUIREMENTS_EDGE)
        (root / SERVICE_NAME).write_text(unit)
        (root / "install.sh").write_text(INSTALL_SH)
        (root / "install.sh").chmod(0o755)
        build_verifier(root / VERIFIER_NAME)
        info = {
            "format": BUNDLE_FORMAT,
            "kit_version": __version__,
            "checkpoint_sha256": export.checkpoint_sha256,
            "keep_ratios": list(export.keep_ratios),
            "int8": int8 is not None,
            "tensorrt": list(tensorrt),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "service": {"build_args": build_words, "run_args": list(run_args)},
        }
        (root / "bundle.json").write_text(json.dumps(info, indent=2) + "\n")
        write_sums(root)
        if sign_key:
            sign_sums(root, sign_key)
        verify_tree(root)  # the bundle passes the device's own check before it leaves
        with atomic_path(out) as partial, tarfile.open(partial, "w:gz") as tar:
            tar.add(root, arcname=top, filter=_reset_owner)
    return out


def remote_install_script(bundle_name: str, remote_dir: str, install_args: list[str] | tuple[str, ...] = ()) -> str:
    """Shell run on the device: check the archive's checksum, unpack it with the kit's verifier (which refuses
    links, special files and unlisted or changed files, and checks the signature when the device trusts keys),
    then run `install.sh` (which verifies again, as root, before it touches the system)."""
    q = shlex.quote
    top = bundle_name.removesuffix(".tar.gz")
    return (
        f"set -e; cd -- {q(remote_dir)}; "
        f"sha256sum --check --strict {q(bundle_name + '.sha256')} || "
        f"{{ echo 'bundle archive checksum mismatch; refusing to install' >&2; exit 1; }}; "
        f"rm -rf -- {q(top)}; python3 -I -B {REMOTE_VERIFIER} --extract {q(top)} {q(bundle_name)}; "
        f'$([ "$(id -u)" = 0 ] || echo sudo) ./{q(top)}/install.sh ' + " ".join(q(a) for a in install_args)
    ).strip()
