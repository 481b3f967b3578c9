"""Host and device are two install profiles of one package.

- the device modules (listed once, in pyproject's ruff `per-file-target-version`) pass `vermin -t=3.8-`;
- `ckd build`, `ckd run` and `ckd bench --backends tensorrt` import and run with torch, onnx and onnxruntime made
  unimportable (TensorRT and CUDA replaced by `fake_trt` for this check only: it proves imports and plumbing,
  never accuracy);
- the wheel says Requires-Python >= 3.8 with the heavy dependencies in extras, and install.sh's pip lines work in
  a real Python 3.8 venv (--no-deps, numpy never installed), and so do `make device-check`'s from JetPack 5's pip;
- a bundle from the demo output carries per-TensorRT graphs, reference outputs and that install.sh.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from test_lock import LOCK, read_lock

from ckd_cli.main import main
from edge.deploy.scripts import INSTALL_SH, REQUIREMENTS_EDGE

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnx", "onnxruntime", "onnx_graphsurgeon", "safetensors", "matplotlib", "tensorboard", "yaml")


def device_files() -> list[str]:
    """The device modules, from the one list (pyproject.toml, [tool.ruff.per-file-target-version])."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["per-file-target-version"]
    assert set(table.values()) == {"py38"}
    return sorted({f for pattern in table for f in glob.glob(str(ROOT / pattern))})


def device_modules() -> list[str]:
    return [".".join(Path(f).relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for f in device_files()]


def test_vermin_device_modules_run_on_python_38():
    files = device_files()
    names = {Path(f).relative_to(ROOT).as_posix() for f in files}
    for needed in ("ckd/track/tracker.py", "edge/backends/tensorrt.py", "edge/trt/build.py", "pipelines/loop.py"):
        assert needed in names
    vermin = Path(sys.executable).with_name("vermin")
    done = subprocess.run(
        [str(vermin), "-t=3.8-", "--violations", "--no-tips", "--no-parse-comments", *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]


DEVICE_SCRIPT = r"""
import importlib, json, sys
from importlib.abc import MetaPathFinder

HEAVY = {heavy!r}

class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{{name}} is not on the device")

sys.meta_path.insert(0, Block())
sys.path.insert(0, {tests!r})
from fake_trt import install_cudart, make_tensorrt

shapes = json.loads({shapes!r})
sys.modules["tensorrt"] = make_tensorrt(shapes, {trt_version!r})
rt = install_cudart()
import edge.devices as devices
jetson = devices.detect_jetson({jetson_root!r})
devices.detect = lambda root="/": jetson
for name in {modules!r}:
    importlib.import_module(name)
from ckd_cli.main import main
codes = [
    main(["build", "--onnx", {model!r}, "--int8", {int8!r}, "--precision", "best"]),
    main(["run", "--rgb", {uri!r}, "--tir", {uri!r}, "--backend", "tensorrt", "--model-dir", {model!r},
          "--frames", "6", "--replay", "--no-overlay", "--out", {out!r}]),
    main(["bench", "--backends", "tensorrt", "--model-dir", {model!r}, "--frames", "4", "--warmup", "1",
          "--json", {out!r} + "/bench.json"]),
]
live = {{k: len(v) for k, v in rt.live.items()}}
print(json.dumps({{"codes": codes, "heavy": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY),
                  "live": live}}))
"""


@pytest.mark.parametrize(
    ("trt_version", "jetson", "folder"),
    [("8.5.2.2", "orin-nx8-jp511", "trt8.5"), ("10.3.0", "orin-nano-jp61", "fp32")],
)
def test_device_entry_points_run_without_torch_onnx_onnxruntime(demo_graphs, tmp_path, trt_version, jetson, folder):
    model, int8 = tmp_path / "model", tmp_path / "model-int8"
    shutil.copytree(demo_graphs / "fp32", model)
    shutil.copytree(demo_graphs / "trt", int8)
    for ref in model.rglob("reference.npz"):
        ref.unlink()  # the fake engine cannot compute the network: no fidelity gate in this plumbing check
    shapes = json.loads((model / "manifest.json").read_text())
    io = {**shapes["inputs"], **shapes["outputs"]}
    script = DEVICE_SCRIPT.format(
        heavy=HEAVY,
        tests=str(ROOT / "tests"),
        shapes=json.dumps(io),
        trt_version=trt_version,
        jetson_root=str(ROOT / "tests/data/jetson" / jetson),
        modules=device_modules(),
        model=str(model),
        int8=str(int8),
        uri="synthetic://?seed=3&frames=12&width=320&height=240",
        out=str(tmp_path / "run"),
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 0, 0], done.stderr[-3000:]
    assert result["heavy"] == []
    assert all(n == 0 for n in result["live"].values()), result["live"]  # every CUDA object made was destroyed
    selection = json.loads((model / "engines" / "selection.json").read_text())
    assert selection["tensorrt"] == trt_version and {r["key"]["precision"] for r in selection["rungs"]} == {"fp16"}
    built = Manifest_hashes(model if folder == "fp32" else model / folder)
    assert {r["key"]["model_sha256"] for r in selection["rungs"]} <= built
    engine = json.loads(next((model / "engines").glob("ckd_k0.70_fp16.engine")).read_bytes())
    assert ("OBEY_PRECISION_CONSTRAINTS" in engine["flags"]) == (folder == "trt8.5")  # decomposed LayerNorm pinned
    assert len((tmp_path / "run" / "track.jsonl").read_text().splitlines()) >= 6
    assert json.loads((tmp_path / "run" / "bench.json").read_text())["conditions"]["tensorrt"] == trt_version


def Manifest_hashes(folder: Path) -> set[str]:
    return {r["sha256"] for r in json.loads((folder / "manifest.json").read_text())["rungs"]}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    from edge.deploy.bundle import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_metadata_two_profiles(wheel):
    with zipfile.ZipFile(wheel) as whl:
        meta = whl.read(next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert re.search(r"^Requires-Python: >=3\.8$", meta, re.M)
    requires = re.findall(r"^Requires-Dist: (.+)$", meta, re.M)
    plain = sorted(r for r in requires if "extra ==" not in r)
    assert [re.split(r"[<>=!;\s]", r)[0] for r in plain] == ["numpy", "tqdm"]
    assert "numpy>=1.17" in plain  # JetPack 5 ships numpy 1.17
    extras = set(re.findall(r"^Provides-Extra: (.+)$", meta, re.M))
    assert {"host", "gst", "dev", "jetson"} <= extras
    for heavy in ("torch", "onnx", "onnxruntime", "opencv-python-headless", "matplotlib", "tensorboard"):
        assert any(r.startswith(heavy) and 'extra == "host"' in r for r in requires), heavy
    jetson = [r for r in requires if 'extra == "jetson"' in r]
    assert any(r.startswith("cuda-python") for r in jetson) and not any("pycuda" in r for r in requires)


def _pip_lines() -> list[str]:
    return [ln for ln in INSTALL_SH.splitlines() if '/venv/bin/pip" install' in ln]


def test_install_pip_lines_never_replace_jetpack_packages():
    lines = _pip_lines()
    assert len(lines) == 2 and all("--no-deps" in ln for ln in lines)
    assert '"$B"/wheels/*.whl' in lines[0] and '-r "$B/requirements-edge.txt"' in lines[1]
    pins = read_lock(LOCK)
    for req in REQUIREMENTS_EDGE.strip().splitlines():
        name, version = re.match(r"([A-Za-z0-9_.-]+)==([^;\s]+)", req).groups()
        assert name.lower() not in ("numpy", "opencv-python", "opencv-python-headless", "pygobject", "tensorrt")
        if name in pins:
            assert pins[name] == version, f"{name}: requirements-edge {version}, lock {pins[name]}"


def _python38() -> str | None:
    for candidate in (
        shutil.which("python3.8"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8"))),
    ):
        if candidate and subprocess.run([candidate, "-c", "1"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_install_pip_lines_work_on_python_38(wheel, tmp_path):
    py38 = _python38()
    if py38 is None:
        pytest.skip("no Python 3.8 interpreter here (JetPack 5's Python)")
    bundle, prefix = tmp_path / "bundle", tmp_path / "prefix"
    (bundle / "wheels").mkdir(parents=True)
    shutil.copy2(wheel, bundle / "wheels" / wheel.name)
    (bundle / "requirements-edge.txt").write_text(REQUIREMENTS_EDGE)
    subprocess.run([py38, "-m", "venv", str(prefix / "venv")], check=True, timeout=120)
    env = {**os.environ, "PREFIX": str(prefix), "B": str(bundle), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    kit, deps = _pip_lines()
    done = subprocess.run(["bash", "-c", f"set -e; {kit}"], cwd=bundle, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    venv = prefix / "venv" / "bin"
    assert subprocess.run([str(venv / "ckd"), "--help"], capture_output=True, timeout=60).returncode == 0
    site = next((prefix / "venv" / "lib").glob("python3.8/site-packages"))
    files = [str(site / Path(f).relative_to(ROOT)) for f in device_files()]
    compiled = subprocess.run([str(venv / "python"), "-m", "py_compile", *files], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    # the package line resolves on Python 3.8 (dry run: markers, Requires-Python and wheels checked by pip itself)
    deps_env = {**env, "PIP_DRY_RUN": "1"}
    done = subprocess.run(["bash", "-c", deps], cwd=bundle, env=deps_env, capture_output=True, text=True, timeout=300)
    offline = re.search(r"NewConnectionError|Temporary failure in name resolution|Network is unreachable", done.stderr)
    if done.returncode != 0 and offline:
        pytest.skip("no package index reachable for the dry run of the requirements line")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tqdm-4.70.1" in done.stdout and "cuda-python-11.8.2" in done.stdout
    listed = subprocess.run([str(venv / "pip"), "list"], capture_output=True, text=True).stdout
    assert "numpy" not in listed


def test_device_check_venv_installs_the_checkout_with_jetpack5_pip(tmp_path):
    """`make device-check`'s venv lines on Python 3.8 starting from JetPack 5's pip 20.0.2, which cannot install a
    pyproject-only project editable: the Makefile upgrades pip first, then the checkout installs."""
    py38 = _python38()
    if py38 is None:
        pytest.skip("no Python 3.8 interpreter here (JetPack 5's Python)")
    venv = tmp_path / "venv-device"
    subprocess.run([py38, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    seeded = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "pip==20.0.2"], env=env, capture_output=True, text=True
    )
    if seeded.returncode != 0:
        pytest.skip(f"cannot install pip 20.0.2 here (no package index?): {seeded.stderr.strip()[-200:]}")
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(".*", "out", "build", "*.egg-info", "__pycache__"))
    plan = subprocess.run(
        ["make", "-n", "device-check", f"DEVICE_VENV={venv}"], cwd=checkout, capture_output=True, text=True
    )
    assert plan.returncode == 0, plan.stderr
    lines = [ln for ln in plan.stdout.splitlines() if ln.startswith(f"{venv}/bin/pip install")]
    editable = next(i for i, ln in enumerate(lines) if ln.endswith("--no-deps -e ."))
    old = subprocess.run(["bash", "-c", lines[editable]], cwd=checkout, env=env, capture_output=True, text=True)
    assert old.returncode != 0 and "editable mode" in old.stderr  # the failure the upgrade is there for
    for line in lines[: editable + 1]:
        done = subprocess.run(["bash", "-c", line], cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}: {done.stderr[-2000:]}"
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import edge; print(edge.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip() == str(checkout / "edge" / "__init__.py")


def test_bundle_from_demo_output_carries_graphs_per_tensorrt(demo_graphs, wheel, tmp_path):
    out = tmp_path / "ckd.tar.gz"
    argv = ["flash", "--onnx", str(demo_graphs / "fp32"), "--int8", str(demo_graphs / "trt"), "--bundle", str(out)]
    assert main([*argv, "--wheel", str(wheel)]) == 0
    with tarfile.open(out) as tar:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tar.getnames() if "/" in n}
        install = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/install.sh"))).read().decode()
        info = json.loads(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/bundle.json"))).read())
    for name in (
        "model/manifest.json",
        "model/ckd_k0.70.onnx",
        "model/reference.npz",
        "model/trt8.5/manifest.json",
        "model/trt8.5/ckd_k0.70.onnx",
        "model/trt8.5/reference.npz",
        "model-int8/ckd_k0.70_int8.onnx",
        "model-int8/calib.cache",
        "model-int8/trt8.5/ckd_k0.70_int8.onnx",
        "model-int8/trt8.5/calib.cache",
        "requirements-edge.txt",
    ):
        assert name in names, name
    assert info["tensorrt"] == ["8.5", "8.6", "10"]
    assert [ln for ln in install.splitlines() if '/venv/bin/pip" install' in ln] == _pip_lines()
