"""PyTorch eager backend: the reference runtime (any keep ratio, FP32, CPU or CUDA)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ckd.model.config import LADDER
from ckd.model.network import CKDNet
from ckd.track.backend import INPUT_NAMES, allocate_inputs


class TorchBackend:
    """Runs a `CKDNet` on the tracker's named numpy buffers (shared with torch without copying)."""

    name = "torch"

    def __init__(self, model: CKDNet, threads: int | None = None) -> None:
        self.model = model.eval()
        cfg = model.cfg
        self.cfg = cfg
        self.template_size, self.search_size = cfg.template_size, cfg.search_size
        self.keep_ratios = LADDER
        self.default_keep_ratio = cfg.ce_keep_ratio
        if threads:
            torch.set_num_threads(threads)
        self._buffers = allocate_inputs(cfg.template_size, cfg.search_size)
        self._tensors = {k: torch.from_numpy(v) for k, v in self._buffers.items()}

    def input_buffers(self) -> dict[str, np.ndarray]:
        return self._buffers

    def run(self, inputs: Mapping[str, np.ndarray], keep_ratio: float | None = None) -> dict[str, np.ndarray]:
        tensors = [
            self._tensors[k] if inputs[k] is self._buffers[k] else torch.from_numpy(np.ascontiguousarray(inputs[k]))
            for k in INPUT_NAMES
        ]
        ratio = self.default_keep_ratio if keep_ratio is None else keep_ratio
        with torch.inference_mode():
            out = self.model(*tensors, keep_ratio=ratio)
        return {k: out[k].numpy() for k in ("score_map", "size_map", "offset_map", "pred_boxes")}
