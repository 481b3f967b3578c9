"""The backend interface: the tracker's only contact with a network runtime.

A backend runs the raw network on named tensors. It owns preallocated input buffers
(`input_buffers()`); the tracker crops and normalises straight into them, so a backend that
binds those buffers to its runtime (ONNX Runtime IOBinding, mapped pinned memory on Jetson)
makes no copy and no allocation per frame.

Inputs (float32, NCHW, normalised): `template_rgb`, `template_tir` (1x3xTxT),
`search_rgb`, `search_tir` (1x3xSxS). Outputs: `score_map` (1x1xFxF), `size_map`,
`offset_map` (1x2xFxF), `pred_boxes` (1x1x4: cx, cy, w, h normalised to the search crop).

Keep ratios ("rungs") are chosen per call: `run(inputs, keep_ratio=0.7)`; `keep_ratios` lists
the rungs a backend can run (a torch backend runs any ratio; exported graphs one per rung).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

INPUT_NAMES = ("template_rgb", "template_tir", "search_rgb", "search_tir")
OUTPUT_NAMES = ("score_map", "size_map", "offset_map", "pred_boxes")


def input_shapes(template_size: int, search_size: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the named inputs for a configuration (batch 1)."""
    t, s = (1, 3, template_size, template_size), (1, 3, search_size, search_size)
    return {"template_rgb": t, "template_tir": t, "search_rgb": s, "search_tir": s}


def output_shapes(feat_size: int) -> dict[str, tuple[int, ...]]:
    f = feat_size
    return {
        "score_map": (1, 1, f, f),
        "size_map": (1, 2, f, f),
        "offset_map": (1, 2, f, f),
        "pred_boxes": (1, 1, 4),
    }


@runtime_checkable
class Backend(Protocol):
    """What the tracker needs from a runtime."""

    name: str
    template_size: int
    search_size: int
    keep_ratios: tuple[float, ...]  # rungs available; a torch backend lists its default only

    def input_buffers(self) -> dict[str, np.ndarray]:
        """Preallocated input arrays (named as INPUT_NAMES) that `run` reads without copying."""
        ...

    def run(self, inputs: Mapping[str, np.ndarray], keep_ratio: float | None = None) -> dict[str, np.ndarray]:
        """Run the network on named inputs at a keep ratio (None: the backend's default rung)."""
        ...


def allocate_inputs(template_size: int, search_size: int) -> dict[str, np.ndarray]:
    """Fresh, C-contiguous float32 input buffers for a backend to own."""
    return {k: np.zeros(v, dtype=np.float32) for k, v in input_shapes(template_size, search_size).items()}
