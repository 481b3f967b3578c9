"""Runtime backends for the tracker and `make_backend`, which picks one: ONNX Runtime when no GPU is present."""

from __future__ import annotations

from pathlib import Path

from ckd.errors import CKDError

KINDS = ("auto", "torch", "onnxruntime")


def make_backend(kind: str, source: str | Path | None, threads: int | None = None, precision: str | None = None):
    """A tracker backend.

    kind: "torch" (source = checkpoint or None for the demo student), "onnxruntime" (source = a folder
    from `ckd export`/`ckd quantize`), or "auto": ONNX Runtime for an export folder, torch for a checkpoint.
    ONNX Runtime is the embedded default where there is no GPU; with a GPU, export folders
    are built into TensorRT engines and run by `edge.trt`, not here.
    """
    if kind not in KINDS:
        raise CKDError(f"unknown backend {kind!r}; choose from {', '.join(KINDS)}")
    is_export_dir = source is not None and Path(source).is_dir()
    if kind == "auto":
        kind = "onnxruntime" if is_export_dir else "torch"
    if kind == "onnxruntime":
        if not is_export_dir:
            raise CKDError(f"{source}: the onnxruntime backend needs a `ckd export`/`ckd quantize` folder")
        from edge.backends.onnxruntime import OrtBackend

        return OrtBackend(source, threads=threads, precision=precision)
    if is_export_dir:
        raise CKDError(f"{source}: the torch backend needs a checkpoint file, not an export folder")
    from ckd.model.checkpoint import load_model
    from ckd.track.torch_backend import TorchBackend

    return TorchBackend(load_model(source), threads=threads)
