"""ONNX Runtime backend: the exported rungs on CPU with IOBinding, no allocation per frame.

Every rung gets one `InferenceSession` (created on first use, then kept) and one IOBinding bound once
to the backend's input buffers and to preallocated output arrays, so `run` neither copies inputs
nor allocates outputs; switching rung per call only picks another bound session.

INT8 graphs are checked when the backend is made: one whose INT8 format saturates on this CPU (full-range U8S8
on x86 without VNNI, `quantize.cpu_target`) is refused with the `--cpu-target` to quantize for (TensorRT-format
S8S8 graphs: with the note that only a VNNI or Arm CPU checks them, `--cpu-target` does not change their format).

Default rung: the cheapest rung (smallest keep ratio) whose keep ratio is >= the config's
`ce_keep_ratio`; if no rung is that high, the manifest's first rung.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ckd.errors import CKDError
from ckd.track.backend import INPUT_NAMES, OUTPUT_NAMES
from edge.manifest import Manifest, Rung
from quantize.cpu_target import check_int8_format


def session_options(threads: int | None = None, spin: bool = False):
    """CPU session options: all graph optimisations (int8 kernel fusion), `threads` intra-op threads.

    Thread spinning is off by default: a tracker runs once per frame and then waits for the camera, and
    spinning pool threads would steal the cores from the rest of the pipeline (and from other rungs'
    sessions). Measured on the base model: spinning sessions left idle beside torch made it ~6x slower.
    With `spin`, pool threads spin only while a run is in progress (`session.force_spinning_stop`), which
    saves the wake-up of every parallel section of the ~900 small operators of a ViT graph.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        so.add_session_config_entry("session.force_spinning_stop", "1")
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    return so


def open_session(path: str | Path, threads: int | None = None, spin: bool = False):
    """An ONNX Runtime CPU session; a truncated or foreign file is a CKDError naming it."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), session_options(threads, spin), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad graphs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CKDError(f"{path}: ONNX Runtime cannot load it ({first[:160]})") from None


def _pick_precision(manifest: Manifest, precision: str | None) -> str:
    have = {r.precision for r in manifest.rungs}
    if precision is None:
        return "int8" if "int8" in have else "fp32"
    if precision not in have:
        raise CKDError(f"{manifest.directory}: no {precision} rungs (has {', '.join(sorted(have))})")
    return precision


class OrtBackend:
    """The tracker `Backend` over a folder written by `ckd export` / `ckd quantize`."""

    name = "onnxruntime"

    def __init__(
        self,
        model_dir: str | Path | Manifest,
        threads: int | None = None,
        precision: str | None = None,
        spin: bool = False,
    ) -> None:
        self.manifest = model_dir if isinstance(model_dir, Manifest) else Manifest.load(model_dir)
        self.precision = _pick_precision(self.manifest, precision)
        if self.precision == "int8":
            check_int8_format(self.manifest.calibration, str(self.manifest.directory or model_dir))
        self.rungs = {r.keep_ratio: r for r in self.manifest.rungs if r.precision == self.precision}
        self.keep_ratios = tuple(sorted(self.rungs))
        cfg = self.manifest.ckd_config
        self.cfg = cfg
        self.template_size, self.search_size = cfg.template_size, cfg.search_size
        self.threads, self.spin = threads, spin
        higher = [r for r in self.keep_ratios if r >= cfg.ce_keep_ratio - 1e-9]
        first = next(r.keep_ratio for r in self.manifest.rungs if r.precision == self.precision)
        self.default_keep_ratio = min(higher) if higher else first
        self._inputs = {k: np.zeros(self.manifest.inputs[k], np.float32) for k in INPUT_NAMES}
        self._outputs = {k: np.zeros(self.manifest.outputs[k], np.float32) for k in OUTPUT_NAMES}
        self._bound: dict[float, tuple[object, object]] = {}  # keep ratio -> (session, io binding)

    def input_buffers(self) -> dict[str, np.ndarray]:
        return self._inputs

    def _rung(self, keep_ratio: float | None) -> Rung:
        k = self.default_keep_ratio if keep_ratio is None else float(keep_ratio)
        for r, rung in self.rungs.items():
            if abs(r - k) < 1e-6:
                return rung
        have = ", ".join(f"{r:.2f}" for r in self.keep_ratios)
        gate = "; it failed the fidelity gate" if self.manifest.gate_failed_at(k) else ""
        raise CKDError(
            f"{self.manifest.directory}: no {self.precision} rung with keep ratio {k:.2f} (rungs: {have}){gate}"
        )

    def _binding(self, keep_ratio: float | None):
        bound = self._bound.get(keep_ratio)
        if bound is not None:
            return bound
        rung = self._rung(keep_ratio)
        bound = self._bound.get(rung.keep_ratio)  # same rung asked as None / default ratio: no second session
        if bound is None:
            sess = open_session(self.manifest.path(rung), self.threads, self.spin)
            binding = sess.io_binding()
            for k, arr in self._inputs.items():
                binding.bind_input(k, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
            for k, arr in self._outputs.items():
                binding.bind_output(k, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
            bound = (sess, binding)
            self._bound[rung.keep_ratio] = bound
        self._bound[keep_ratio] = bound
        return bound

    def run(self, inputs: Mapping[str, np.ndarray], keep_ratio: float | None = None) -> dict[str, np.ndarray]:
        """Run a rung; outputs are the backend's preallocated arrays (overwritten by the next call)."""
        for k in INPUT_NAMES:
            if inputs[k] is not self._inputs[k]:
                np.copyto(self._inputs[k], inputs[k])
        sess, binding = self._binding(keep_ratio)
        sess.run_with_iobinding(binding)
        return self._outputs
