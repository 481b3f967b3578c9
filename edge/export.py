"""Export the CKD network to ONNX: one static graph per keep-ratio rung, a manifest, a parity check.

Exporter: the TorchScript-based `torch.onnx.export(dynamo=False)`. It gives a static graph at opset 17
(LayerNorm as one `LayerNormalization` node, `TopK` with a constant K because the network computes K as a
Python int); onnx-graphsurgeon then folds the constant shape arithmetic the tracer leaves behind.

Graphs per TensorRT generation: TensorRT 8.6 and 10 (and ONNX Runtime) take the graphs above; TensorRT 8.5
has no `LayerNormalization` importer, so for it every LayerNorm is decomposed into primitive nodes (named
`.../ln_fp32/...`: `ckd build` keeps them FP32 through layer precision constraints) in a sub-export
`trt8.5/` with its own manifest. Every graph written for a TensorRT target is checked by `edge.trt.lint`.

Template branch: not split. CKD is one-stream (OSTrack): template and search tokens attend to each
other in every block, so only the template patch embedding (one conv per modality, <1% of the work)
could be computed once at init. It does not pay for a second graph and a second binding per rung.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ckd.atomic import atomic_path
from ckd.errors import CKDError
from ckd.model.config import CKDConfig
from ckd.track.backend import INPUT_NAMES, OUTPUT_NAMES, input_shapes, output_shapes
from edge.manifest import MANIFEST_NAME, Manifest, Rung, rung_filename
from edge.trt.targets import LN_FP32_MARKER, drop_stale_subexports, graph_target, split_targets

OPSET = 17
# Bumped whenever the exported graph changes for the same weights (caches of exports key on it).
# 2: linear layers as one 2-D Gemm each (bias fused), initializers no longer shared through Identity.
# 3: no BOOL ScatterND (template mask built by comparison), constant shape arithmetic folded.
EXPORT_REVISION = 3
# Decomposed vs fused LayerNorm of a Q/DQ graph: float rounding may move a value across a quantization step.
INT8_TOLERANCE = 0.05


def _rung_module(model, keep_ratio: float):
    import torch

    class RungGraph(torch.nn.Module):
        """The network at a fixed keep ratio, returning the four outputs as a tuple (ONNX needs positional outputs)."""

        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, template_rgb, template_tir, search_rgb, search_tir):
            out = self.m(template_rgb, template_tir, search_rgb, search_tir, keep_ratio=keep_ratio)
            return tuple(out[k] for k in OUTPUT_NAMES)

    return RungGraph().eval()


def random_inputs(cfg: CKDConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Normalised-image-like random inputs (standard normal) for parity checks."""
    rng = np.random.default_rng(seed)
    shapes = input_shapes(cfg.template_size, cfg.search_size)
    return {k: rng.standard_normal(shapes[k]).astype(np.float32) for k in INPUT_NAMES}


def export_graph(model, keep_ratio: float, path: str | Path, opset: int = OPSET) -> Path:
    """Write one rung's ONNX graph atomically to `path`."""
    import torch

    cfg = model.cfg
    dummy = tuple(torch.from_numpy(v) for v in random_inputs(cfg).values())
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer warnings
        torch.onnx.export(
            _rung_module(model.eval(), keep_ratio),
            dummy,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            do_constant_folding=True,
        )
        import onnx

        graph = check_onnx(tmp, name=Path(path).name)
        _unshare_initializers(graph)
        onnx.save(fold_constants(graph), str(tmp))
    return Path(path)


def fold_constants(model):
    """The graph with every constant subexpression evaluated (onnx-graphsurgeon, ONNX Runtime as evaluator)."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup().toposort()
    folded = gs.export_onnx(graph)
    folded.ir_version = model.ir_version
    del folded.opset_import[:]
    folded.opset_import.extend(model.opset_import)
    return folded


def decompose_layernorm(model) -> int:
    """Replace every `LayerNormalization` node (last axis) by ReduceMean/Sub/Mul/Sqrt/Div/Add nodes, in place.

    The new nodes are named `<layernorm>/ln_fp32/<op>` so the TensorRT builder can pin them to FP32 (a
    decomposed LayerNorm in FP16 overflows on ViT activations). Returns the number of nodes replaced.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    count = 0
    for index, node in reversed(list(enumerate(graph.node))):
        if node.op_type != "LayerNormalization":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("axis", -1) != -1 or len([o for o in node.output if o]) != 1:
            raise CKDError(f"{node.name}: only last-axis LayerNormalization with one output can be decomposed")
        x, scale = node.input[0], node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        p = f"{node.name}{LN_FP32_MARKER}"
        eps = f"{p}epsilon"
        graph.initializer.append(helper.make_tensor(eps, TensorProto.FLOAT, [], [attrs.get("epsilon", 1e-5)]))
        y = node.output[0]
        new = [
            helper.make_node("ReduceMean", [x], [f"{p}mean"], f"{p}ReduceMean", axes=[-1], keepdims=1),
            helper.make_node("Sub", [x, f"{p}mean"], [f"{p}centered"], f"{p}Sub"),
            helper.make_node("Mul", [f"{p}centered", f"{p}centered"], [f"{p}squared"], f"{p}Square"),
            helper.make_node("ReduceMean", [f"{p}squared"], [f"{p}var"], f"{p}ReduceVar", axes=[-1], keepdims=1),
            helper.make_node("Add", [f"{p}var", eps], [f"{p}var_eps"], f"{p}AddEps"),
            helper.make_node("Sqrt", [f"{p}var_eps"], [f"{p}std"], f"{p}Sqrt"),
            helper.make_node("Div", [f"{p}centered", f"{p}std"], [f"{p}normed"], f"{p}Div"),
            helper.make_node("Mul", [f"{p}normed", scale], [f"{p}scaled" if bias else y], f"{p}Scale"),
        ]
        if bias:
            new.append(helper.make_node("Add", [f"{p}scaled", bias], [y], f"{p}Bias"))
        del graph.node[index]
        for offset, n in enumerate(new):
            graph.node.insert(index + offset, n)
        count += 1
    return count


def _unshare_initializers(model) -> bool:
    """Give every layer its own weight tensors again.

    The exporter stores equal initializers once and feeds the other users through `Identity` nodes (a fresh
    model's zero biases and unit LayerNorm gains are all equal). A bias behind an `Identity` is not a constant
    to the quantizer, which then cannot fold it into the INT8 GEMM; so each Identity of an initializer becomes
    a copy of it under the Identity's output name. Edits `model` (an `onnx.ModelProto`) in place; True if it did.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    shared = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in inits]
    for node in shared:
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]), node.output[0]))
        graph.node.remove(node)
    return bool(shared)


def check_onnx(path: str | Path, name: str | None = None):
    """Load and check an ONNX file; a truncated or foreign file is a CKDError naming it."""
    import onnx

    label = name or str(path)
    try:
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
    except Exception as exc:  # noqa: BLE001 - protobuf/onnx raise many types for corrupt files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CKDError(f"{label}: not a valid ONNX model ({first[:160]})") from None
    names = [i.name for i in graph.graph.input]
    if tuple(names) != INPUT_NAMES:
        raise CKDError(f"{label}: inputs {names} are not the CKD inputs {list(INPUT_NAMES)}")
    return graph


def _dims(values) -> dict[str, list]:
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in values
    }


def check_rung(manifest: Manifest, rung: Rung):
    """A rung's file is a valid ONNX graph with exactly the manifest's input and output tensors (names, shapes)."""
    path = manifest.path(rung)
    graph = check_onnx(path)
    for what, have, want in (
        ("inputs", _dims(graph.graph.input), manifest.inputs),
        ("outputs", _dims(graph.graph.output), manifest.outputs),
    ):
        if have != want:
            raise CKDError(f"{path}: graph {what} {have} are not the {MANIFEST_NAME} {what} {want}")
    return graph


def op_counts(path: str | Path) -> Counter:
    """Operator histogram of a graph (a Netron-free look at what was exported)."""
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def torch_outputs(model, inputs: dict[str, np.ndarray], keep_ratio: float) -> dict[str, np.ndarray]:
    import torch

    with torch.inference_mode():
        out = model(*(torch.from_numpy(inputs[k]) for k in INPUT_NAMES), keep_ratio=keep_ratio)
    return {k: out[k].numpy() for k in OUTPUT_NAMES}


def parity(model, path: str | Path, keep_ratio: float, seed: int = 1) -> dict[str, float]:
    """Max abs error per output between torch and ONNX Runtime on fresh random inputs."""
    import onnxruntime as ort

    inputs = random_inputs(model.cfg, seed)
    ref = torch_outputs(model, inputs, keep_ratio)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip(OUTPUT_NAMES, sess.run(list(OUTPUT_NAMES), inputs), strict=True))
    return {k: float(np.max(np.abs(ref[k] - got[k]))) for k in OUTPUT_NAMES}


def remove_stale(out_dir: Path) -> None:
    """Remove what an earlier export left in `out_dir`: its manifest, the files it lists (rungs, calibration
    cache), any `ckd_k*.onnx`, the reference outputs made from them (`ckd build` would judge the new rungs'
    engines against them) and the manifests of its `trt*/` sub-exports (`graphs_for` would take an old one
    when the new export has none or fails). Other files are left alone."""
    from edge.trt.reference import REFERENCE_NAME

    names = {MANIFEST_NAME, REFERENCE_NAME, *(p.name for p in out_dir.glob("ckd_k*.onnx"))}
    try:
        names |= set(Manifest.load(out_dir, verify=False).files())  # names checked by the manifest reader
    except CKDError:
        pass  # no or unreadable old manifest: the fixed names above still go
    for name in names:
        path = out_dir / name
        if path.is_file() or path.is_symlink():
            path.unlink()
    drop_stale_subexports(out_dir)


def export_rungs(
    model,
    out_dir: str | Path,
    keep_ratios: Sequence[float],
    checkpoint_sha256: str,
    opset: int = OPSET,
    verify: bool = True,
    progress: bool = False,
    tensorrt: Sequence[str] = (),
) -> tuple[Manifest, dict[float, dict[str, float]]]:
    """Export every rung into `out_dir`, write `manifest.json` last; return it and the parity errors per rung.

    `tensorrt`: TensorRT generations ("8.5", "8.6", "10") the export must parse on. Their graphs are linted
    (CKDError when TensorRT would refuse a node: the rung files stay but no manifest is written, in `out_dir`
    or a sub-export, so nothing takes them); 8.5 beside 8.6/10 gets the sub-export
    `trt8.5/` (LayerNorm decomposed). Empty: graphs for ONNX Runtime only (as for TensorRT >= 8.6).
    """
    from tqdm import tqdm

    if opset < 17:
        raise CKDError(f"opset {opset} is too old: LayerNormalization needs opset >= 17")
    ratios = sorted({float(r) for r in keep_ratios}, reverse=True)
    if not ratios:
        raise CKDError("no keep ratios to export")
    cfg = model.cfg
    for r in ratios:
        cfg.keep_ratios(r)  # validates the range
    main, sub = split_targets(tensorrt)
    out_dir = Path(out_dir)
    remove_stale(out_dir)  # a failed re-export must not leave an old manifest behind, nor old rungs beside new ones
    rungs, errors = [], {}
    for r in tqdm(ratios, desc="export", unit="rung", disable=not progress):
        path = export_graph(model, r, out_dir / rung_filename(r), opset)
        if verify:
            errors[r] = parity(model, path, r)
        rungs.append(Rung.from_file(path, r))
    manifest = Manifest(
        config=cfg.to_dict(),
        checkpoint_sha256=checkpoint_sha256,
        opset=opset,
        inputs={k: list(v) for k, v in input_shapes(cfg.template_size, cfg.search_size).items()},
        outputs={k: list(v) for k, v in output_shapes(cfg.feat_size).items()},
        rungs=rungs,
        target=graph_target(main),
    )
    if manifest.target["layernorm"] == "decomposed":
        for rung in rungs:
            rewrite_graph(out_dir / rung.file, decompose_layernorm)
            if verify:
                errors[rung.keep_ratio] = parity(model, out_dir / rung.file, rung.keep_ratio)
        manifest.rungs = [Rung.from_file(out_dir / rung.file, rung.keep_ratio) for rung in rungs]
    write_target_exports(manifest, out_dir, sub)
    return manifest, errors


def rewrite_graph(path: Path, edit) -> None:
    """Apply `edit(model)` to the ONNX file at `path` in place (atomically)."""
    import onnx

    model = onnx.load(str(path))
    edit(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def write_target_exports(manifest: Manifest, out_dir: Path, sub: Sequence[str], tolerance: float = 1e-4) -> None:
    """Lint `out_dir`'s graphs for the manifest's TensorRT generations, then write every sub-export of `sub`
    (decomposed LayerNorm, checked against the main graphs with ONNX Runtime) and `manifest.json` last."""
    import onnx

    from edge.trt.lint import require_parseable

    manifest.directory = out_dir
    require_parseable(manifest, manifest.target["tensorrt"])
    drop_stale_subexports(out_dir, keep=sub)
    cache = (manifest.calibration or {}).get("cache")
    for gen in sub:
        dest = out_dir / f"trt{gen}"
        (dest / MANIFEST_NAME).unlink(missing_ok=True)
        if cache:
            with atomic_path(dest / cache) as tmp:
                tmp.write_bytes((out_dir / cache).read_bytes())
        rungs = []
        for rung in manifest.rungs:
            model = onnx.load(str(out_dir / rung.file))
            decompose_layernorm(model)
            path = dest / rung.file
            with atomic_path(path) as tmp:
                onnx.save(model, str(tmp))
            err = _graph_parity(out_dir / rung.file, path, manifest)
            if err > (tolerance if rung.precision == "fp32" else INT8_TOLERANCE):
                raise CKDError(f"{path}: decomposed LayerNorm differs from the fused graph by {err:.2e}")
            rungs.append(Rung.from_file(path, rung.keep_ratio, rung.precision))
        variant = dataclasses.replace(manifest, rungs=rungs, target=graph_target((gen,)), directory=dest)
        require_parseable(variant, (gen,))
        _save_with_reference(variant, dest)
    _save_with_reference(manifest, out_dir)


def _save_with_reference(manifest: Manifest, directory: Path) -> None:
    """FP32 graphs for TensorRT get their reference outputs (the device's fidelity check) before the manifest."""
    from edge.trt.reference import make_reference

    manifest.directory = directory
    if manifest.target and manifest.target.get("tensorrt") and all(r.precision == "fp32" for r in manifest.rungs):
        make_reference(manifest)
    manifest.save(directory)


def _graph_parity(a: Path, b: Path, manifest: Manifest, seed: int = 2) -> float:
    """Max abs output difference of two graphs of the same rung on random inputs (ONNX Runtime)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    inputs = {k: rng.standard_normal(manifest.inputs[k]).astype(np.float32) for k in INPUT_NAMES}
    outs = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(list(OUTPUT_NAMES), inputs) for p in (a, b)
    ]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(*outs, strict=True))
