"""Reference outputs for the fidelity gate: fixed inputs and the fp32 ONNX outputs of every rung.

Made once on the development machine with ONNX Runtime (`make_reference`) and shipped in the bundle as
`reference.npz`, so the device can check its engines without ONNX Runtime.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ckd.atomic import write_bytes_atomic
from ckd.errors import CKDError
from ckd.track.backend import INPUT_NAMES, OUTPUT_NAMES
from edge.manifest import Manifest

REFERENCE_NAME = "reference.npz"


def reference_inputs(export: Manifest, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic, normalised-looking float32 inputs with the manifest's shapes."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(export.inputs[name]).astype(np.float32) for name in INPUT_NAMES}


def _rung_key(keep_ratio: float) -> str:
    return f"k{keep_ratio:.2f}"


def make_reference(export: Manifest, seed: int = 0) -> Path:
    """Run every fp32 rung in ONNX Runtime on the reference inputs; write `reference.npz` beside the manifest."""
    import onnxruntime as ort

    inputs = reference_inputs(export, seed)
    arrays = {f"input/{k}": v for k, v in inputs.items()}
    for rung in export.rungs:
        if rung.precision != "fp32":
            continue
        session = ort.InferenceSession(str(export.path(rung)), providers=["CPUExecutionProvider"])
        outs = session.run(list(OUTPUT_NAMES), inputs)
        arrays.update({f"{_rung_key(rung.keep_ratio)}/{name}": out for name, out in zip(OUTPUT_NAMES, outs)})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = export.directory / REFERENCE_NAME
    write_bytes_atomic(path, buf.getvalue())
    return path


def load_reference(directory: str | Path, keep_ratio: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, fp32 outputs) for one rung from `directory/reference.npz`."""
    path = Path(directory) / REFERENCE_NAME
    if not path.is_file():
        raise CKDError(f"{path}: no reference outputs (run `ckd build` on the export machine or `ckd flash`)")
    with np.load(path) as data:
        inputs = {k: data[f"input/{k}"] for k in INPUT_NAMES}
        key = _rung_key(keep_ratio)
        if f"{key}/score_map" not in data:
            raise CKDError(f"{path}: no reference outputs for keep ratio {keep_ratio:.2f}")
        outputs = {k: data[f"{key}/{k}"] for k in OUTPUT_NAMES}
    return inputs, outputs
