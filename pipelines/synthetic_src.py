"""`synthetic://` sensors: frames of the synthetic sequence generator, for the appsrc feeder in `pipelines.source`.

The RGB role gives `SynthFrame.rgb` (RGB), the thermal role `SynthFrame.thermal16` (GRAY16_LE), both from the
same `SyntheticSequence(seed)`, so a `synthetic://?seed=S` pair is a registered dual-sensor rig; its first
ground-truth box is the source's default init box. Fault injection for tests and demos (`error_after`,
`stall_after`, `stall_s`) is the feeder's, see `pipelines.source.AppsrcFeeder`.
"""

from __future__ import annotations

import numpy as np

from ckd.errors import CKDError
from pipelines.folder_src import FrameFormat
from pipelines.uri import SourceSpec


class SyntheticFrames:
    """Frame index -> image of one role of a synthetic:// URI (`first`..`last`, `format`, `read`, `init_box`)."""

    def __init__(self, spec: SourceSpec) -> None:
        try:
            from ckd.data.synthetic import SyntheticSequence
        except ImportError as exc:
            raise CKDError(f"{spec.name}: the synthetic generator is not available: {exc}") from None
        self.role = spec.role
        self.seq = SyntheticSequence(
            seed=int(spec.number("seed", 0)),
            frames=int(spec.number("frames", 300)),
            width=int(spec.number("width", 640)),
            height=int(spec.number("height", 480)),
            crossover=spec.params.get("crossover", "0").lower() in ("1", "true", "yes"),
        )
        self.first, self.last = 0, len(self.seq) - 1
        fmt = "RGB" if spec.role == "rgb" else "GRAY16_LE"
        self.format = FrameFormat(fmt, self.seq.width, self.seq.height)

    def __len__(self) -> int:
        return len(self.seq)

    def name(self, index: int) -> str:
        return f"synthetic frame {index}"

    def read(self, index: int) -> np.ndarray:
        f = self.seq.frame(index)
        return f.rgb if self.role == "rgb" else f.thermal16

    def init_box(self) -> tuple[tuple[float, float, float, float], str]:
        return tuple(float(v) for v in self.seq.frame(0).box), "the synthetic ground truth"
