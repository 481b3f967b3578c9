"""`engines/selection.json`: which engine `ckd build` kept per rung, written and verified here (plain functions).

Written by the build with every failure's one-line reason and the folders the engines came from; read by the
runtime, which refuses engines built for another device or TensorRT and engines whose source graph (FP32 or
Q/DQ) or calibration cache is not the one in the export now.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ckd.errors import CKDError
from edge.manifest import Manifest, sha256_file
from edge.trt.cache import EngineKey
from edge.trt.targets import graphs_for

SELECTION_NAME = "selection.json"


def selection_doc(device, features, request: str, chosen: dict, keys: dict, candidates, failures, sources) -> dict:
    """The document: per rung the engine kept (key, GPU time, fidelity, alternatives), the failures, the sources."""
    rungs = []
    for ratio, (prec, cand) in sorted(chosen.items()):
        item = {"key": asdict(keys[(ratio, prec)])}
        if cand is not None:
            item.update({"gpu_ms": round(cand.gpu_ms, 3), "fidelity": asdict(cand.fidelity)})
            others = [c for c in candidates if c.keep_ratio == ratio and c.precision != prec]
            item["alternatives"] = [{"precision": c.precision, "gpu_ms": round(c.gpu_ms, 3)} for c in others]
        rungs.append(item)
    return {
        "device": device.name,
        "tensorrt": features.version,
        "precision_request": request,
        "sources": sources,
        "rungs": rungs,
        "failures": failures,
    }


def read_selection(path: Path) -> dict:
    """selection.json as a dict with a `rungs` list; CKDError with what to do when it is missing or malformed."""
    if not path.is_file():
        raise CKDError(f"{path}: no engines selected yet (run `ckd build`)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CKDError(f"{path}: unreadable ({type(exc).__name__}); run `ckd build` again") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rungs"), list) or not doc["rungs"]:
        raise CKDError(f"{path}: no engine selected (see its failures; run `ckd build` again)")
    return doc


def verify_keys(
    doc: dict, source: str, export_dir: Path, device_name: str, compute_capability: str, tensorrt: str
) -> list[EngineKey]:
    """The selected keys, each checked: same device, compute capability and TensorRT; its FP32 graph in the
    export, its Q/DQ graph in the INT8 folder it was built from, its calibration cache unchanged."""
    keys = []
    for item in doc["rungs"]:
        key = EngineKey.from_record(item.get("key") if isinstance(item, dict) else None, source)
        built = (key.device, key.compute_capability, key.tensorrt)
        if built != (device_name, compute_capability, tensorrt):
            raise CKDError(
                f"{source}: engines were built for {key.device} / TensorRT {key.tensorrt}, "
                f"this is {device_name} / TensorRT {tensorrt}: run `ckd build` again"
            )
        keys.append(key)
    fp32 = Manifest.load(graphs_for(export_dir, tensorrt))
    int8_dir = (doc.get("sources") or {}).get("int8")
    int8 = None
    if int8_dir and any(k.precision == "int8" for k in keys):
        if not Path(int8_dir).is_dir():
            raise CKDError(f"{source}: INT8 engines were built from {int8_dir}, which is gone: run `ckd build`")
        int8 = Manifest.load(graphs_for(int8_dir, tensorrt))
    qdq = int8 or fp32
    for key in keys:
        from_fp32 = key.precision != "int8" or key.calibration_sha256
        graphs, precision = (fp32, "fp32") if from_fp32 else (qdq, "int8")
        if key.model_sha256 not in {r.sha256 for r in graphs.rungs if r.precision == precision}:
            raise CKDError(
                f"{source}: the {key.precision} engine of keep ratio {key.keep_ratio:.2f} was built from a graph "
                f"that is not in {graphs.directory} now: run `ckd build`"
            )
        if key.calibration_sha256:
            name = (qdq.calibration or {}).get("cache")
            cache = qdq.directory / str(name)
            if not name or not cache.is_file() or sha256_file(cache) != key.calibration_sha256:
                raise CKDError(
                    f"{source}: calibration cache changed since its INT8 engines were built: run `ckd build`"
                )
    return keys
