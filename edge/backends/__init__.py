"""Runtime backends for the tracker and `make_backend`, which picks one: ONNX Runtime when no GPU is present."""

from __future__ import annotations

from pathlib import Path

from ckd.errors import CKDError

KINDS = ("auto", "torch", "onnxruntime", "tensorrt")


def make_backend(
    kind: str, source: str | Path | None, threads: int | None = None, precision: str | None = None, spin: bool = False
):
    """A tracker backend.

    kind: "torch" (source = checkpoint or None for the demo student), "onnxruntime" (source = a folder
    from `ckd export`/`ckd quantize`), "tensorrt" (source = an export folder whose engines `ckd build` made),
    or "auto": for an export folder TensorRT when its engines were built on this machine, else ONNX Runtime
    (the embedded default without a GPU); torch for a checkpoint. `spin`: ONNX Runtime threads spin during a run.
    """
    if kind not in KINDS:
        raise CKDError(f"unknown backend {kind!r}; choose from {', '.join(KINDS)}")
    is_export_dir = source is not None and Path(source).is_dir()
    if kind == "auto":
        built = is_export_dir and (Path(source) / "engines" / "selection.json").is_file()
        kind = ("tensorrt" if built and _has_tensorrt() else "onnxruntime") if is_export_dir else "torch"
    if kind == "tensorrt":
        if not is_export_dir:
            raise CKDError(f"{source}: the tensorrt backend needs a `ckd export` folder with engines from `ckd build`")
        from edge.backends.tensorrt import TensorRTBackend

        return TensorRTBackend.from_export(source)
    if kind == "onnxruntime":
        if not is_export_dir:
            raise CKDError(f"{source}: the onnxruntime backend needs a `ckd export`/`ckd quantize` folder")
        from edge.backends.onnxruntime import OrtBackend

        return OrtBackend(source, threads=threads, precision=precision, spin=spin)
    if is_export_dir:
        raise CKDError(f"{source}: the torch backend needs a checkpoint file, not an export folder")
    from ckd.model.checkpoint import load_model
    from ckd.track.torch_backend import TorchBackend

    return TorchBackend(load_model(source), threads=threads)


def _has_tensorrt() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None
