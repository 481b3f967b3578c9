"""INT8: Q/DQ graphs run in ONNX Runtime, the precision policy holds node by node, and the fidelity gate.

The graph and policy tests use a random nano model. The gate tests use the shipped demo student (nano, trained on
synthetic sequences; skipped when not installed): a random model's score map is 0.5 +- 0.01 everywhere, so FP32
and INT8 agree whatever the calibration. `benchmarks/gate_error_rates.py` runs once, small (1 rung, 2 seeds, 5 clips
x 20 frames), and its graphs serve the CLI and consumer tests. The gate's verdicts rest on per-crop agreement on
identical inputs, far from every limit (docs/fidelity.md), not on a few points of AUC.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from toy_export import toy_export

from calibration.sampler import sample_crops
from calibration.sources import synthetic_clips
from calibration.store import write_calibration
from ckd.errors import CKDError
from ckd.model.checkpoint import DEMO_STUDENT
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd_cli.main import main
from edge.backends.onnxruntime import OrtBackend
from edge.devices import PROFILES
from edge.export import export_rungs, random_inputs
from edge.int8 import optimized_ops, quantize_export, record_gate
from edge.manifest import Manifest
from edge.trt.plan import plan_rungs
from quantize.cpu_target import host_target
from quantize.fidelity import (
    MIN_SEQUENCES,
    CropAgreement,
    RungFidelity,
    Thresholds,
    check_crops,
    compare_outputs,
    paired_drop,
    rung_fidelity,
    worst_rung,
)
from quantize.policy import KEEP_FLOAT, check_policy, keep_float, quantized_nodes

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "random:nano:0"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    model = CKDNet(preset("nano")).eval()
    export_rungs(model, root / "fp32", (1.0,), SOURCE, verify=False)
    backend = OrtBackend(root / "fp32", precision="fp32")
    crops = sample_crops(backend, synthetic_clips(8, 33, seed=1), 128, every=2)
    write_calibration(root / "calib", crops, "synthetic", 1, {"name": model.cfg.name, "checkpoint_sha256": SOURCE})
    quantize_export(root / "fp32", root / "calib", root / "int8")
    return root


@pytest.fixture(scope="module")
def rates(tmp_path_factory):
    """(work folder of the demo student's graphs, report) of a small `benchmarks/gate_error_rates.py` run."""
    if not DEMO_STUDENT.is_file():
        pytest.skip("demo student not installed")
    tmp = tmp_path_factory.mktemp("rates")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gate_error_rates.py"), "--keep-ratios", "1.0"]
    cmd += ["--seeds", "1000,11", "--sequences", str(MIN_SEQUENCES), "--frames", "20", "--calib-frames", "64"]
    cmd += ["--threads", "1", "--work", str(tmp / "work"), "--json", str(tmp / "rates.json")]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    (work,) = (tmp / "work").iterdir()
    return work, json.loads((tmp / "rates.json").read_text()), run.stdout


def test_quantized_graph_runs_and_uses_int8_kernels(setup):
    q = OrtBackend(setup / "int8")
    f = OrtBackend(setup / "fp32", precision="fp32")
    assert q.precision == "int8" and q.keep_ratios == (1.0,)
    for b in (q, f):
        for k, v in random_inputs(preset("nano"), 2).items():
            b.input_buffers()[k][...] = v
    out = {k: v.copy() for k, v in q.run(q.input_buffers(), 1.0).items()}
    ref = f.run(f.input_buffers(), 1.0)
    assert all(np.isfinite(v).all() for v in out.values())
    assert not np.array_equal(out["score_map"], ref["score_map"])  # really a different (quantized) graph
    ops = optimized_ops(setup / "int8" / "ckd_k1.00_int8.onnx")
    assert ops.get("QGemm", 0) == 32  # qkv/proj/fc1/fc2 x 4 x 2 with bias and dequantization fused
    assert ops.get("QLinearConv", 0) >= 1


def test_policy_nodes_stay_float(setup):
    graph = onnx.load(str(setup / "int8" / "ckd_k1.00_int8.onnx"))
    q = quantized_nodes(graph)
    audit = check_policy(graph)
    assert audit["violations"] == []
    by_op = {}
    for n in graph.graph.node:
        by_op.setdefault(n.op_type, []).append(n.name)
    # Every LayerNorm, Softmax, GELU Erf and attention-core MatMul is fed by float tensors, not DequantizeLinear.
    for op in ("LayerNormalization", "Softmax", "Erf"):
        assert by_op[op] and not set(by_op[op]) & q, op
    core = [n for n in by_op["MatMul"] if keep_float("MatMul", n)]
    assert len(core) == 16 and not set(core) & q  # q@k^T and attn@v, 4 blocks x 2 branches
    head_out = [n for n in by_op["Conv"] if "conv5_" in n]
    assert len(head_out) == 3 and not set(head_out) & q
    assert len(by_op["MatMul"]) == 16  # only the attention core is left as MatMul
    linear = by_op["Gemm"]
    assert len(linear) == 32 and set(linear) <= q  # the GEMMs really are INT8
    gemm_out = {o for n in graph.graph.node if n.op_type == "Gemm" for o in n.output}
    assert not [n for n in graph.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in gemm_out]
    assert {r.label for r in KEEP_FLOAT} >= {"layernorm", "softmax", "attention-core", "gelu", "head-output"}


def test_bad_inputs_are_refused(setup, tmp_path):
    other = tmp_path / "other"
    export_rungs(CKDNet(preset("nano")).eval(), other, (1.0,), "random:nano:other", verify=False)
    with pytest.raises(CKDError, match="made with model random:nano:0"):
        quantize_export(other, setup / "calib", tmp_path / "x")
    with pytest.raises(CKDError, match="no calibration.json"):
        quantize_export(setup / "fp32", tmp_path, tmp_path / "y")
    assert not (tmp_path / "y").exists()
    rung = other / "ckd_k1.00.onnx"
    rung.write_bytes(rung.read_bytes()[:5000])
    with pytest.raises(CKDError, match="sha256 mismatch"):
        quantize_export(other, setup / "calib", tmp_path / "z")
    from edge.backends.onnxruntime import open_session

    with pytest.raises(CKDError, match="ckd_k1.00.onnx: ONNX Runtime cannot load it"):
        open_session(rung)


# --- the gate's error rates and its verdicts on the demo student ------------------------------------------------


def test_gate_error_rates_self_and_noise_pass_broken_calibration_fails(rates):
    _, doc, stdout = rates
    assert doc["false_fail"]["self"] == {"checks": 2, "failed": 0, "wrong": 0, "rate": 0.0}
    assert doc["false_fail"]["noise"]["wrong"] == 0 and doc["miss"]["broken"]["wrong"] == 0
    for r in doc["runs"]["self"].values():
        (r,) = r  # FP32 against itself: bit-identical outputs and trajectories
        assert (r["iou_agreement_median"], r["peak_moved_fraction"], r["auc_drop_points"]) == (1.0, 0.0, 0.0)
    for (r,) in doc["runs"]["broken"].values():  # caught per crop, whatever the accuracy statistic says
        assert r["iou_agreement_median"] < 0.85 and r["score_cosine_mean"] < 0.9 and r["failures"]
        assert r["failures"][0].startswith("median box IoU")
    for (r,) in doc["runs"]["int8"].values():  # real calibration: far inside every per-crop limit
        assert r["iou_agreement_median"] > 0.95 and r["score_cosine_mean"] > 0.95 and not r["failures"]
    assert doc["int8_verdicts"] == {"1.00": ["pass"]}
    assert doc["cpu"]["flags"] and "false-fail rate, FP32 vs itself: 0/2 rung checks" in stdout


def _calib(work: Path, name: str) -> Path:
    """The calibration set `gate_error_rates.py` made for `name` (int8, broken): 64 crops, this CPU's target."""
    return work / f"calib-{name}-64crops-{host_target()}"


def test_gate_error_rates_cache_holds_calib_frames_and_cpu_target(rates, tmp_path, monkeypatch):
    import argparse
    import importlib.util

    from quantize import cpu_target

    work, _, _ = rates
    spec = importlib.util.spec_from_file_location("gate_error_rates", ROOT / "benchmarks" / "gate_error_rates.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = argparse.Namespace(checkpoint=None, work=str(work.parent), keep_ratios=(1.0,), threads=1, calib_frames=64)
    here = host_target()
    made = {name: (work / f"{name}-64crops-{here}" / "manifest.json").stat().st_mtime_ns for name in ("int8", "broken")}
    _, _, graphs = script.prepare(args)  # what the fixture's run made: reused
    assert graphs == {name: work / f"{name}-64crops-{here}" for name in made}
    assert {name: (graphs[name] / "manifest.json").stat().st_mtime_ns for name in made} == made
    args.calib_frames = 8
    _, _, graphs = script.prepare(args)
    assert graphs == {name: work / f"{name}-8crops-{here}" for name in made}
    assert all(Manifest.load(g).calibration["count"] == 8 for g in graphs.values())
    other = "vnni" if here == "avx2" else "avx2"
    cpuinfo = tmp_path / "cpuinfo"  # what CKD_CPUINFO names under an emulator
    cpuinfo.write_text("flags\t: fpu sse2 avx2" + (" avx512_vnni\n" if other == "vnni" else "\n"))
    monkeypatch.setattr(cpu_target, "CPUINFO", cpuinfo)
    _, _, graphs = script.prepare(args)
    assert graphs == {name: work / f"{name}-8crops-{other}" for name in made}
    assert all(Manifest.load(g).calibration["cpu_target"] == other for g in graphs.values())


def _quantize(rates, calib: str, out: Path, *extra: str) -> int:
    work, _, _ = rates
    argv = ["quantize", "--onnx", str(work / "fp32"), "--calib", str(_calib(work, calib)), "--out", str(out), "--gate"]
    return main([*argv, "--eval-sequences", str(MIN_SEQUENCES), "--eval-length", "20", "--threads", "1", *extra])


def test_gate_cli_passes_real_calibration(rates, tmp_path, capsys):
    assert _quantize(rates, "int8", tmp_path / "ok") == 0
    out = capsys.readouterr().out
    assert "k=1.00: 95 crops, median IoU" in out and "over 5 sequences: pass" in out
    manifest = Manifest.load(tmp_path / "ok")
    assert [r.keep_ratio for r in manifest.rungs] == [1.0] and manifest.gate["passed"] == [1.0]
    assert manifest.gate["failed"] == [] and manifest.gate_note() is None
    report = json.loads((tmp_path / "ok" / "fidelity.json").read_text())
    assert report["eval"]["crops"] == "ground-truth centred" and report["eval"]["reset_on_failure"]
    assert report["thresholds"] == manifest.gate["thresholds"] and not report["rungs"][0]["failures"]
    assert OrtBackend(tmp_path / "ok").keep_ratios == (1.0,)


def _stand_in_wheel(tmp_path: Path) -> str:
    """A zip with the files `ckd flash --wheel` looks for (the bundle is never installed here)."""
    wheel = tmp_path / "ckd_edge-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name in ("ckd_cli/main.py", "edge/deploy/verify.py"):
            z.writestr(name, "")
    return str(wheel)


def test_failed_gate_leaves_nothing_a_later_command_accepts(rates, tmp_path, capsys):
    """Every consumer of an INT8 folder refuses one whose rungs all failed: one line, no traceback, no output."""
    work, _, _ = rates
    bad = tmp_path / "bad"
    assert _quantize(rates, "broken", bad) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars: one error line
    assert err.startswith("ckd quantize: error: fidelity gate failed for 1 rung(s), removed from the manifest")
    assert "worst k=1.00: median box IoU" in err
    assert not (bad / "ckd_k1.00_int8.onnx").exists() and (bad / "fidelity.json").is_file()
    manifest = Manifest.load(bad, verify=False)
    assert manifest.rungs == [] and manifest.failed_gate()[1.0][0].startswith("median box IoU")
    refused = "every rung failed the fidelity gate (1.00: median box IoU"
    with pytest.raises(CKDError, match=refused.replace("(", r"\(")):
        OrtBackend(bad)  # ckd run / ckd track / the bench
    with pytest.raises(CKDError, match="every rung failed the fidelity gate"):
        plan_rungs(Manifest.load(work / "fp32"), "best", PROFILES["orin-nx"], int8_export=Manifest.load(bad))
    uri = "synthetic://?seed=1&fps=30&frames=5&width=160&height=120"
    run = ["run", "--rgb", uri, "--tir", uri, "--backend", "onnxruntime", "--model-dir", str(bad)]
    assert main([*run, "--out", str(tmp_path / "run"), "--no-overlay"]) == 2
    assert refused in capsys.readouterr().err and not (tmp_path / "run").exists()
    flash = ["flash", "--onnx", str(work / "fp32"), "--int8", str(bad), "--wheel", _stand_in_wheel(tmp_path)]
    assert main([*flash, "--bundle", str(tmp_path / "b.tar.gz")]) == 2
    assert refused in capsys.readouterr().err and not (tmp_path / "b.tar.gz").exists()
    demo = tmp_path / "demo"  # `ckd demo` over finished steps whose quantize step failed its gate
    shutil.copytree(work / "fp32", demo / "model" / "fp32")
    shutil.copytree(_calib(work, "int8"), demo / "calib")
    shutil.copytree(bad, demo / "model" / "int8")
    assert main(["demo", "--out", str(demo)]) == 2
    assert "no INT8 rung passed the fidelity gate" in capsys.readouterr().err
    assert not (demo / "track.jsonl").exists()


def test_interrupted_gate_leaves_nothing_accepted(setup, tmp_path, capsys):
    """While the gate runs the manifest is pending: refused by every consumer, but the gate runs on the object."""
    manifest = quantize_export(setup / "fp32", setup / "calib", tmp_path / "int8", gate=True)
    assert Manifest.load(tmp_path / "int8", verify=False).gate == {"pending": True}
    with pytest.raises(CKDError, match="the fidelity gate never finished on these rungs"):
        OrtBackend(tmp_path / "int8")
    assert OrtBackend(manifest).keep_ratios == (1.0,)
    demo = tmp_path / "demo"  # `ckd demo` quantizes again over an interrupted gate instead of reusing it
    shutil.copytree(tmp_path / "int8", demo / "model" / "int8")
    shutil.copytree(setup / "fp32", demo / "model" / "fp32")
    crops = {k: np.zeros((2, *v[1:]), np.float32) for k, v in manifest.inputs.items()}
    write_calibration(demo / "calib", crops, "synthetic", 0, {"name": "nano", "checkpoint_sha256": "another"})
    assert main(["demo", "--out", str(demo)]) == 2  # quantize runs again, and refuses the foreign calibration
    assert "made with model another" in capsys.readouterr().err
    assert not (demo / "model" / "int8" / "manifest.json").exists()


def _verdict(keep_ratio: float, failures: list[str]) -> RungFidelity:
    return RungFidelity(10, 0.99, 0.98, 0.0, 0.0, 0.99, 0.95, failures, keep_ratio=keep_ratio)


def test_partly_failed_gate_ships_and_runs_only_the_rungs_that_passed(tmp_path, capsys):
    fp32 = toy_export(tmp_path / "fp32", ratios=(1.0, 0.7))
    for folder in (tmp_path / "int8" / "trt8.5", tmp_path / "int8"):  # with a TensorRT 8.5 sub-export; main last
        int8 = toy_export(folder, ratios=(1.0, 0.7), int8=True)
        int8.rungs = [r for r in int8.rungs if r.precision == "int8"]
        int8.gate = {"pending": True}
        int8.save(folder)
    with pytest.raises(CKDError, match="trt8.5: the fidelity gate never finished"):
        Manifest.load(tmp_path / "int8" / "trt8.5")
    gated = record_gate(int8, [_verdict(1.0, []), _verdict(0.7, ["median box IoU 0.5 < 0.9"])], Thresholds(), "r.json")
    for folder in (tmp_path / "int8", tmp_path / "int8" / "trt8.5"):
        assert [r.keep_ratio for r in Manifest.load(folder).rungs] == [1.0] == gated.gate["passed"]
        assert not (folder / "ckd_k0.70_int8.onnx").exists() and (folder / "ckd_k1.00_int8.onnx").exists()
    note = f"{tmp_path / 'int8'}: rungs 0.70 failed the fidelity gate (see r.json)"
    assert gated.gate_note() == note
    backend = OrtBackend(tmp_path / "int8")
    assert backend.keep_ratios == (1.0,)
    with pytest.raises(CKDError, match=r"no int8 rung with keep ratio 0.70 \(rungs: 1.00\); it failed the fidelity"):
        backend.run(backend.input_buffers(), 0.7)
    plans = plan_rungs(fp32, "best", PROFILES["orin-nx"], int8_export=Manifest.load(tmp_path / "int8"))
    assert [(p.keep_ratio, p.precision) for p in plans] == [(1.0, "fp16"), (1.0, "int8"), (0.7, "fp16")]
    with pytest.raises(CKDError, match="no INT8 source for keep ratio 0.70"):
        plan_rungs(fp32, "int8", PROFILES["orin-nx"], int8_export=Manifest.load(tmp_path / "int8"))
    bundle = tmp_path / "b.tar.gz"
    argv = ["flash", "--onnx", str(tmp_path / "fp32"), "--int8", str(tmp_path / "int8")]
    argv += ["--wheel", _stand_in_wheel(tmp_path)]
    assert main([*argv, "--bundle", str(bundle)]) == 0
    assert f"{note}; not shipped" in capsys.readouterr().out
    with tarfile.open(bundle) as tar:
        shipped = sorted(Path(n).name for n in tar.getnames() if "model-int8/" in n and n.endswith(".onnx"))
    assert shipped == ["ckd_k1.00_int8.onnx"]
    uri = "synthetic://?seed=1&fps=30&frames=4&width=160&height=120"
    run = ["run", "--rgb", uri, "--tir", uri, "--backend", "onnxruntime", "--model-dir", str(tmp_path / "int8")]
    run += ["--init", "60,40,30,30", "--threads", "1", "--no-overlay"]
    assert main([*run, "--rungs", "1.0,0.7", "--out", str(tmp_path / "r1")]) == 2
    assert "it failed the fidelity gate" in capsys.readouterr().err
    assert main([*run, "--out", str(tmp_path / "r2")]) == 0
    assert f"{note}; not used" in capsys.readouterr().out


# --- the gate's arithmetic -----------------------------------------------------------------------------------


def _head(peak: tuple[int, int], size: float = 0.25, f: int = 8) -> dict[str, np.ndarray]:
    score = np.full((1, 1, f, f), 0.05, np.float32)
    score[0, 0, peak[0], peak[1]] = 0.9
    offset = np.full((1, 2, f, f), 0.5, np.float32)
    return {"score_map": score, "size_map": np.full((1, 2, f, f), size, np.float32), "offset_map": offset}


def test_crop_agreement_numbers():
    ref = _head((4, 4))
    same = compare_outputs(ref, ref, 128)
    assert (same.iou[0], same.peak_shift_px[0], same.cosine[0]) == (1.0, 0.0, 1.0)
    wider = compare_outputs(ref, _head((4, 4), size=0.5), 128)  # same centre, twice the side: IoU 1/4
    assert wider.iou[0] == pytest.approx(0.25) and wider.peak_shift_px[0] == 0.0
    moved = compare_outputs(ref, _head((4, 6)), 128)  # two cells of 16 px: boxes 0.25 wide, 0.25 apart
    assert moved.peak_shift_px[0] == 32.0 and moved.iou[0] == 0.0
    nan = {k: np.full_like(v, np.nan) for k, v in ref.items()}
    broken = compare_outputs(ref, nan, 128)
    assert (broken.iou[0], broken.cosine[0]) == (0.0, 0.0)
    with pytest.raises(CKDError, match="score_map: the outputs compared have different shapes"):
        compare_outputs(ref, _head((4, 4), f=16), 128)
    agreement = CropAgreement.concat([same] * 19 + [moved])  # the peak moves on 5 % of crops
    check = check_crops(agreement, Thresholds())
    assert check.passed and check.iou_agreement_median == 1.0 and check.peak_moved_fraction == 0.05
    assert check.score_cosine_mean == pytest.approx((19 + moved.cosine[0]) / 20)
    moved_limit = Thresholds(max_peak_moved=0.03)
    assert check_crops(agreement, moved_limit).failures == ["score peak moved on 5.0% of crops > 3%"]
    assert check_crops(CropAgreement.concat([]), Thresholds()).failures == ["no crops were compared"]


def test_paired_drop_interval():
    same = paired_drop([0.5] * 8, [0.5] * 8)
    assert (same.mean, same.low, same.high, same.sequences) == (0.0, 0.0, 0.0, 8)
    shifted = paired_drop([0.5] * 8, [0.45] * 8)  # 5 points on every sequence: no uncertainty
    assert shifted.low == pytest.approx(5.0) and shifted.high == pytest.approx(5.0)
    ref = np.full(8, 0.4)
    chaos = ref - np.array([10, -10, 8, -8, 5, -5, 3, -1]) / 100  # +-10 points per sequence, mean +0.25
    noisy = paired_drop(ref, chaos)
    assert noisy.mean == pytest.approx(0.25) and -5 < noisy.low < 0 < noisy.high < 5
    assert noisy == paired_drop(ref, chaos)  # seeded: the same interval every time
    wide = paired_drop(ref, chaos, confidence=0.99)
    assert wide.low < noisy.low and wide.high > noisy.high
    assert paired_drop([0.5, np.nan, 0.4], [0.4, 0.3, np.nan]).sequences == 1
    one = paired_drop([0.5], [0.1])
    assert one.mean == pytest.approx(40.0) and (one.low, one.high) == (-np.inf, np.inf)


def test_rung_verdicts_and_plain_json():
    gt = np.tile([100.0, 80, 40, 40], (21, 1))
    good = CropAgreement(np.full(20, 0.97), np.zeros(20), np.full(20, 0.99))
    lost = gt.copy()
    lost[1:, 0] += 200  # the candidate loses the target on every frame
    seqs = [(gt, lost, gt)] * MIN_SEQUENCES
    r = rung_fidelity(0.7, good, seqs, Thresholds(), reset_on_failure=True)
    assert r.auc_drop_points == pytest.approx(100 * 20 / 21)  # IoU 1 clears 20 of the 21 thresholds
    assert r.auc_drop_ci == pytest.approx((100 * 20 / 21,) * 2) and r.sequences == MIN_SEQUENCES
    assert [f.split(" drop")[0] for f in r.failures] == ["success AUC", "precision"]
    few = rung_fidelity(0.7, good, seqs[: MIN_SEQUENCES - 1], Thresholds())
    assert few.precision_drop_points == pytest.approx(100.0) and not few.failures  # too few sequences to conclude
    pairs = rung_fidelity(1.0, good, (), Thresholds())  # no ground truth: accuracy n/a
    d = pairs.to_dict()
    assert d["auc_drop_points"] is None and d["auc_drop_ci"] == [None, None] and d["sequences"] == 0
    json.dumps(d, allow_nan=False)
    assert worst_rung([pairs, r]) is r and worst_rung([pairs]) is None


def test_gate_record_in_the_manifest_is_checked(tmp_path):
    toy_export(tmp_path, ratios=(1.0,), int8=True)
    path = tmp_path / "manifest.json"
    good = json.loads(path.read_text())
    assert "gate" not in good  # exports and ungated INT8 folders carry no record
    for gate in ("passed", {"failed": [{"failures": ["x"]}]}, {"failed": "1.0"}):
        path.write_text(json.dumps(good | {"gate": gate}))
        with pytest.raises(CKDError, match="manifest.json: malformed manifest"):
            Manifest.load(tmp_path)
    path.write_text(json.dumps(good | {"rungs": []}))
    with pytest.raises(CKDError, match="manifest.json: lists no rungs"):  # no rungs and no gate to explain it
        Manifest.load(tmp_path)
