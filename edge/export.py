"""Export the CKD network to ONNX: one static graph per keep-ratio rung, a manifest, a parity check.

Exporter: the TorchScript-based `torch.onnx.export(dynamo=False)`. It gives a clean static graph at
opset 17 (LayerNorm as one `LayerNormalization` node, `TopK` with a constant K because the network
computes K as a Python int) and needs no extra dependency.

Template branch: not split. CKD is one-stream (OSTrack): template and search tokens attend to each
other in every block, so only the template patch embedding (one conv per modality, <1% of the work)
could be computed once at init. It does not pay for a second graph and a second binding per rung.
"""

from __future__ import annotations

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

OPSET = 17
# Bumped whenever the exported graph changes for the same weights (caches of exports key on it).
# 2: linear layers as one 2-D Gemm each (bias fused), initializers no longer shared through Identity.
EXPORT_REVISION = 2


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
        graph = check_onnx(tmp, name=Path(path).name)
        if _unshare_initializers(graph):
            import onnx

            onnx.save(graph, str(tmp))
    return Path(path)


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
    cache), any `ckd_k*.onnx` and the reference outputs made from them (`ckd build` would judge the new rungs'
    engines against them). Other files are left alone."""
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


def export_rungs(
    model,
    out_dir: str | Path,
    keep_ratios: Sequence[float],
    checkpoint_sha256: str,
    opset: int = OPSET,
    verify: bool = True,
    progress: bool = False,
) -> tuple[Manifest, dict[float, dict[str, float]]]:
    """Export every rung into `out_dir`, write `manifest.json` last; return it and the parity errors per rung."""
    from tqdm import tqdm

    if opset < 17:
        raise CKDError(f"opset {opset} is too old: LayerNormalization needs opset >= 17")
    ratios = sorted({float(r) for r in keep_ratios}, reverse=True)
    if not ratios:
        raise CKDError("no keep ratios to export")
    cfg = model.cfg
    for r in ratios:
        cfg.keep_ratios(r)  # validates the range
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
    )
    manifest.save(out_dir)
    return manifest, errors
