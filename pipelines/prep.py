"""Frame preparation: a job's samples -> the RGB and 8-bit thermal arrays the tracker sees.

1. Map: each sample's GStreamer buffer is viewed as numpy without copying (`pipelines.mapped`).
2. Thermal to 8 bits: `ckd.data.thermal.thermal_to_8bit`, the one stateless mapping training and calibration use
   too. What the thermal frames are (16-bit counts, 8-bit grey, grey saved as 3 channels, false colour) is
   recognised from the first frame's data and announced in one line.
3. Registration onto the RGB geometry (`pipelines.registration`); without `--rig` a thermal frame of another size
   is resized, announced once in a line naming the frame.
4. Stand-ins: a lost sensor's image is made from the other sensor's (live mode only). Once an RGB frame has been
   seen, thermal frames are registered onto the RGB geometry even while RGB is lost, so the stand-in has the RGB
   size and pixel space the tracker and the overlay were set up in.

Every array handed on is a view of mapped memory or a buffer allocated once. Copies are measured, not assumed:
per frame and stage, a stage's output counts as a copy when its data does not lie in the mapped input buffer.
On leaving `FramePrep.frame()` every view is dropped and the buffers are released.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from ckd.data.thermal import GRAY8, GRAY16, describe_thermal, thermal_kind, thermal_to_8bit
from ckd.errors import CKDError
from pipelines.feed import Job
from pipelines.registration import Registrar, RigCalibration

COPY_STAGES = ("rgb_input", "tir_input", "thermal_to_8bit", "registration", "stand_in")


@dataclass
class Frame:
    """The arrays of one job, valid only inside `FramePrep.frame()`."""

    rgb: np.ndarray | None
    tir8: np.ndarray | None
    copies: dict[str, int] = field(default_factory=dict)


class FramePrep:
    """Maps, converts and registers a job's frames into what the tracker sees (see the module docstring)."""

    def __init__(
        self,
        calibration: RigCalibration | None,
        log: Callable[[str], None],
        name_of: Callable[[str, int], str] = lambda role, i: f"{role} frame {i}",
    ) -> None:
        self.calibration = calibration
        self.log = log
        self.name_of = name_of
        self.registrar: Registrar | None = None
        self.kind: str | None = None  # thermal kind, recognised from the first thermal frame
        self._ndim = 0
        self.copies: Counter = Counter()  # stage -> copies summed over prepared frames
        self.frames = 0
        self._bufs: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.shape != shape:
            buf = self._bufs[name] = np.zeros(shape, dtype=np.uint8)
        return buf

    @contextmanager
    def frame(self, job: Job) -> Iterator[Frame]:
        """The job's arrays; every view of GStreamer memory is dropped and unmapped when the block ends."""
        maps = {}
        out = Frame(None, None)
        try:
            for role in ("rgb", "tir"):
                sample = getattr(job, role)
                if sample is not None:
                    maps[role] = sample.map()
            self._prepare(job, maps, out)
            yield out
        finally:
            out.rgb = out.tir8 = None
            for m in maps.values():
                m.release()

    def _prepare(self, job: Job, maps: dict, out: Frame) -> None:
        copies = dict.fromkeys(COPY_STAGES, 0)
        rgb = maps["rgb"].array if "rgb" in maps else None
        tir8 = None
        if "tir" in maps:
            raw = maps["tir"].array
            tir8 = self._to_8bit(raw, job.tir.index)
            copies["thermal_to_8bit"] = int(not maps["tir"].contains(tir8))
            registered = tir8
            if rgb is not None:
                registered = self._register(tir8, rgb, job.tir.index)
            elif self.registrar is not None:  # RGB lost: still into RGB pixels, so the stand-in has the RGB geometry
                registered = self.registrar(tir8)
            copies["registration"] = int(registered is not tir8)
            tir8 = registered
        if rgb is None:  # thermal only: its image stands in for RGB
            rgb = self._buffer("rgb_standin", (*tir8.shape, 3))
            cv2.cvtColor(tir8, cv2.COLOR_GRAY2RGB, dst=rgb)
            copies["stand_in"] = 1
        if tir8 is None:  # RGB only: its grey image stands in for thermal
            tir8 = self._buffer("tir_standin", rgb.shape[:2])
            cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY, dst=tir8)
            copies["stand_in"] = 1
        for role, array in (("rgb", rgb), ("tir", tir8)):
            copies[f"{role}_input"] = int(role not in maps or not maps[role].contains(array))
        self.copies.update(copies)
        self.frames += 1
        out.rgb, out.tir8, out.copies = rgb, tir8, copies

    def _to_8bit(self, raw: np.ndarray, index: int) -> np.ndarray:
        if self.kind is None or (raw.dtype == np.uint16) != (self.kind == GRAY16) or raw.ndim != self._ndim:
            try:
                kind = thermal_kind(raw)
            except TypeError as exc:
                raise CKDError(f"{self.name_of('tir', index)}: {exc}") from None
            self.log(f"{describe_thermal(kind)}; detected in {self.name_of('tir', index)}")
            self.kind, self._ndim = kind, raw.ndim
        if self.kind == GRAY8:
            return thermal_to_8bit(raw, kind=self.kind)  # the mapped frame itself: no copy
        return thermal_to_8bit(raw, out=self._buffer("tir8", raw.shape[:2]), kind=self.kind)

    def _register(self, tir8: np.ndarray, rgb: np.ndarray, index: int) -> np.ndarray:
        if self.registrar is None:
            self.registrar = Registrar((rgb.shape[1], rgb.shape[0]), self.calibration)
        if self.calibration is None and tir8.shape[:2] != rgb.shape[:2] and self.registrar.writes == 0:
            h, w = tir8.shape[:2]
            self.log(
                f"warning: {self.name_of('tir', index)} is {w}x{h}, RGB frames are {rgb.shape[1]}x{rgb.shape[0]}, "
                "and no --rig is given: thermal frames are resized to the RGB size (boxes drift where the views "
                "differ; `ckd calibrate-rig` makes a rig file)"
            )
        return self.registrar(tir8)

    def copies_per_frame(self) -> dict[str, float]:
        """Mean copies per prepared frame, by stage."""
        n = max(self.frames, 1)
        return {stage: round(self.copies[stage] / n, 3) for stage in COPY_STAGES}
