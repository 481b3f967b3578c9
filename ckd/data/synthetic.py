"""Seeded procedural RGB-thermal sequences with a real modality gap, and a LasHeR-layout writer.

RGB: a cluttered, textured background, a striped/checkered target, distractors that share the target's colours,
global illumination changes (slow drift, one sudden dimming or brightening, a colour cast) and sensor noise.
Thermal (uint16 counts in centikelvin, like a radiometric Boson/Lepton "TLinear" stream: 29315 = 20 C): a smooth
temperature field with warm blobs, the target as a blurred heat signature with little texture, hot distractors,
sensor noise with column fixed-pattern noise and a slow offset drift. With `crossover=True` the target cools to the
local background temperature for a stretch of frames (thermal crossover).

Every sequence has motion, scale change, a full occlusion behind a pillar and an out-of-view stretch; the first
frame always shows the target. `SyntheticSequence.frame(i)` is random access and deterministic in (seed, i).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ckd.data.boxes import to_one_based, write_boxes
from ckd.data.clip import Clip
from ckd.data.thermal import thermal_to_8bit
from ckd.errors import CKDError

SPRITE = 64  # base sprite resolution; sprites are resized to the box every frame
_PAD = 32  # noise buffers are this much larger than the frame and sliced at a per-frame offset
KELVIN0 = 27315  # 0 C in centikelvin counts


@dataclass
class SynthFrame:
    """One generated frame pair with its ground truth."""

    rgb: np.ndarray  # HxWx3 uint8, RGB order
    thermal16: np.ndarray  # HxW uint16 counts (centikelvin)
    box: np.ndarray  # (4,) float64 x, y, w, h 0-based; the full box even when occluded or out of view
    visible: bool  # False when the target is fully occluded or out of view


@dataclass
class _Actor:
    """A moving object: per-frame boxes, RGB sprite, alpha, thermal pattern and per-frame heat above background."""

    boxes: np.ndarray  # N x 4 int-valued float64
    rgb: np.ndarray  # SPRITE x SPRITE x 3 float32
    alpha: np.ndarray  # SPRITE x SPRITE float32, sharp ellipse (RGB)
    heat_alpha: np.ndarray  # SPRITE x SPRITE float32, blurred ellipse (thermal optics)
    heat_pattern: np.ndarray  # SPRITE x SPRITE float32 around 1.0, smooth
    delta: np.ndarray  # N float32: object temperature minus local background (counts)


def _smoothstep_path(key_t: np.ndarray, key_xy: np.ndarray, n: int) -> np.ndarray:
    """Positions at frames 0..n-1 through keyframes with zero velocity at each key (smoothstep easing)."""
    t = np.arange(n, dtype=np.float64)
    seg = np.clip(np.searchsorted(key_t, t, side="right") - 1, 0, len(key_t) - 2)
    t0, t1 = key_t[seg], key_t[seg + 1]
    u = np.clip((t - t0) / np.maximum(t1 - t0, 1e-9), 0.0, 1.0)
    s = (u * u * (3.0 - 2.0 * u))[:, None]
    return key_xy[seg] * (1.0 - s) + key_xy[seg + 1] * s


def _ellipse(blur: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SPRITE, 0:SPRITE].astype(np.float32)
    c = (SPRITE - 1) / 2.0
    inset = 1.0 + 2.0 * blur  # keep the blurred edge inside the sprite, so the box stays tight
    r = ((xx - c) / (c - inset + 1.0)) ** 2 + ((yy - c) / (c - inset + 1.0)) ** 2
    mask = (r <= 1.0).astype(np.float32)
    if blur > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur)
    return mask


def _texture(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A high-frequency coloured sprite: stripes or checks of two colours plus grain."""
    yy, xx = np.mgrid[0:SPRITE, 0:SPRITE].astype(np.float32)
    period = rng.uniform(5.0, 12.0)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    if rng.random() < 0.5:
        pattern = (np.floor(u / period) % 2).astype(np.float32)
    else:
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        pattern = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    second = np.clip(base + rng.uniform(-110, 110, 3), 0, 255)
    tex = base[None, None, :] * (1 - pattern[..., None]) + second[None, None, :] * pattern[..., None]
    tex += rng.normal(0.0, 10.0, tex.shape)
    return np.clip(tex, 0, 255).astype(np.float32)


def _heat_pattern(rng: np.random.Generator) -> np.ndarray:
    """Low-texture heat: a smooth vertical gradient (warmer top or bottom) and one soft hot spot."""
    yy, xx = np.mgrid[0:SPRITE, 0:SPRITE].astype(np.float32) / (SPRITE - 1)
    grad = 1.0 + rng.uniform(-0.2, 0.2) * (yy - 0.5)
    cx, cy = rng.uniform(0.3, 0.7, 2)
    spot = 0.25 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
    return (grad + spot).astype(np.float32)


def _paste(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-blend `src` (h x w [x C]) into `dst` at (x0, y0), clipped to `dst`."""
    H, W = dst.shape[:2]
    h, w = alpha.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if xa >= xb or ya >= yb:
        return
    d = dst[ya:yb, xa:xb]
    s = src[ya - y0 : yb - y0, xa - x0 : xb - x0]
    a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0]
    if d.ndim == 3:
        a = a[..., None]
    d[...] = d + (s - d) * a


class SyntheticSequence:
    """A deterministic synthetic RGBT sequence; `frame(i)` renders frame i on demand (a few ms at 640x480)."""

    def __init__(self, seed: int, frames: int = 100, width: int = 640, height: int = 480, crossover: bool = False):
        if frames < 1 or width < 64 or height < 64:
            raise CKDError(
                f"synthetic sequence needs frames >= 1 and at least 64x64 pixels, got {frames} frames "
                f"of {width}x{height}"
            )
        self.seed = int(seed)
        self.frames = int(frames)
        self.width = int(width)
        self.height = int(height)
        self.crossover = bool(crossover)
        self.crossover_frames: tuple[int, int] | None = None  # first and last frame at background temperature
        rng = np.random.default_rng(self.seed)
        self._build_background(rng)
        self.target = self._build_target(rng)
        self.distractors = [self._build_distractor(rng, k) for k in range(int(rng.integers(2, 5)))]
        self._build_illumination(rng)
        self._build_noise(rng)
        self.boxes = self.target.boxes
        self.visible = self._visibility()

    # --- construction -------------------------------------------------------------------------------------------

    def _build_background(self, rng: np.random.Generator) -> None:
        H, W = self.height, self.width
        top, bottom = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
        ramp = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None, None]
        bg = (top * (1 - ramp) + bottom * ramp) * np.ones((1, W, 1), np.float32)
        bg = np.ascontiguousarray(bg)
        for _ in range(int(rng.integers(25, 50))):  # clutter: boxes, discs and lines
            colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
            x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
            size = int(rng.integers(W // 40, W // 8))
            kind = rng.integers(0, 3)
            if kind == 0:
                cv2.rectangle(bg, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), colour, -1)
            elif kind == 1:
                cv2.circle(bg, (x, y), size // 2, colour, -1)
            else:
                cv2.line(
                    bg, (x, y), (int(rng.integers(0, W)), int(rng.integers(0, H))), colour, int(rng.integers(1, 4))
                )
        bg += rng.normal(0.0, 14.0, bg.shape).astype(np.float32)  # fine texture (grass, gravel, asphalt)
        self._bg_rgb = np.clip(bg, 0, 255).astype(np.uint8)

        # Thermal: sky/ground gradient, a smooth random field and a few warm blobs, all low-frequency.
        sky, ground = KELVIN0 + rng.uniform(500, 1500), KELVIN0 + rng.uniform(1500, 2500)
        field = (sky * (1 - ramp[..., 0]) + ground * ramp[..., 0]) * np.ones((1, W), np.float32)
        coarse = rng.normal(0.0, 120.0, (max(H // 48, 2), max(W // 48, 2))).astype(np.float32)
        field += cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)
        for _ in range(int(rng.integers(2, 6))):
            centre = (int(rng.integers(0, W)), int(rng.integers(0, H)))
            axes = (int(rng.integers(W // 20, W // 6)), int(rng.integers(H // 20, H // 6)))
            blob = np.zeros((H, W), np.float32)
            cv2.ellipse(blob, centre, axes, 0.0, 0.0, 360.0, float(rng.uniform(150, 600)), -1)
            field += cv2.GaussianBlur(blob, (0, 0), 6.0)
        self.ambient = field.astype(np.float32)  # HxW background temperature (centikelvin), before objects

    def _path(self, rng: np.random.Generator, keys: int, size: float) -> tuple[np.ndarray, np.ndarray]:
        """Random in-frame keyframes for an object of about `size` pixels: (key times, key centres)."""
        n = self.frames
        key_t = np.linspace(0.0, max(n - 1, 1), keys)
        lo = np.array([size, size]) * 0.6
        hi = np.array([self.width, self.height]) - lo
        key_xy = rng.uniform(lo, np.maximum(hi, lo + 1), (keys, 2))
        return key_t, key_xy

    def _scales(self, rng: np.random.Generator, amount: float) -> np.ndarray:
        t = np.arange(self.frames, dtype=np.float64)
        period = self.frames * rng.uniform(0.6, 1.3) + 1.0
        return np.exp(amount * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))

    @staticmethod
    def _boxes(centres: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
        w = np.maximum(np.round(w), 4.0)
        h = np.maximum(np.round(h), 4.0)
        x = np.round(centres[:, 0] - w / 2)
        y = np.round(centres[:, 1] - h / 2)
        return np.stack([x, y, w, h], axis=1).astype(np.float64)

    def _build_target(self, rng: np.random.Generator) -> _Actor:
        n, W, H = self.frames, self.width, self.height
        w0 = rng.uniform(0.07, 0.13) * W
        aspect = rng.uniform(0.6, 2.0)
        scale = self._scales(rng, rng.uniform(0.2, 0.4))
        w, h = w0 * scale, np.minimum(w0 * aspect * scale, 0.45 * H)
        w_max = float(w.max())

        keys = max(4, n // 20 + 2)
        key_t, key_xy = self._path(rng, keys, max(w_max, float(h.max())))
        occ_k, out_k = rng.choice(np.arange(1, keys), size=2, replace=False)
        # The pillar sits where the target will hide; the first keyframe must be clear of it.
        self.pillar_w = int(np.ceil(w_max * 1.15)) + 4
        self.pillar_x = int(np.clip(key_xy[occ_k, 0] - self.pillar_w / 2, 0, W - self.pillar_w))
        key_xy[occ_k, 0] = self.pillar_x + self.pillar_w / 2
        # Other keyframes stay clear of it, so the target only passes behind it in transit.
        clear = self.pillar_w / 2 + w_max
        left, right = key_xy[occ_k, 0] - clear, key_xy[occ_k, 0] + clear
        for k in range(keys):
            if k != occ_k and abs(key_xy[k, 0] - key_xy[occ_k, 0]) < clear:
                key_xy[k, 0] = left if left - w_max / 2 > W - w_max / 2 - right else right
                key_xy[k, 0] = np.clip(key_xy[k, 0], w_max / 2, W - w_max / 2)
        side = rng.integers(0, 4)  # leave through one of the four borders, fully
        margin = 0.5 * max(w_max, float(h.max())) + 2.0  # centre this far outside = box fully outside
        if side == 0:
            key_xy[out_k, 0] = -margin
        elif side == 1:
            key_xy[out_k, 0] = W + margin
        elif side == 2:
            key_xy[out_k, 1] = -margin
        else:
            key_xy[out_k, 1] = H + margin
        # Hold still at both event keys so the event lasts several frames.
        hold = min(max(1.0, n / 40.0), 0.5 * float(key_t[1] - key_t[0]))
        key_t, key_xy = self._hold(key_t, key_xy, {int(occ_k), int(out_k)}, hold)
        centres = _smoothstep_path(key_t, key_xy, n)

        delta = np.full(n, rng.uniform(300.0, 900.0), np.float32)  # 3..9 K warmer than its surroundings
        if self.crossover:
            delta *= self._crossover_ramp(rng)
        base = rng.uniform(30, 225, 3)
        return _Actor(
            boxes=self._boxes(centres, w, h),
            rgb=_texture(rng, base),
            alpha=_ellipse(0.0),
            heat_alpha=_ellipse(2.5),
            heat_pattern=_heat_pattern(rng),
            delta=delta,
        )

    @staticmethod
    def _hold(key_t: np.ndarray, key_xy: np.ndarray, keys: set[int], hold: float) -> tuple[np.ndarray, np.ndarray]:
        ts, xys = [], []
        for k, (t, xy) in enumerate(zip(key_t, key_xy)):
            if k in keys and 0 < k < len(key_t) - 1:
                ts += [t - hold / 2, t + hold / 2]
                xys += [xy, xy]
            elif k in keys and k == len(key_t) - 1:
                ts += [t - hold, t]
                xys += [xy, xy]
            else:
                ts.append(t)
                xys.append(xy)
        return np.asarray(ts), np.asarray(xys)

    def _crossover_ramp(self, rng: np.random.Generator) -> np.ndarray:
        """1 outside the crossover stretch, 0 inside it, with linear ramps of ~8% of the sequence."""
        n = self.frames
        t = np.arange(n, dtype=np.float64)
        start = rng.uniform(0.25, 0.45) * n
        length = rng.uniform(0.2, 0.3) * n
        ramp = max(n * 0.08, 1.0)
        down = np.clip((t - start) / ramp, 0, 1)
        up = np.clip((t - (start + length)) / ramp, 0, 1)
        self.crossover_frames = (int(np.ceil(start + ramp)), int(np.floor(start + length)))
        return (1.0 - down + up).astype(np.float32)

    def _build_distractor(self, rng: np.random.Generator, k: int) -> _Actor:
        """k even: looks like the target in RGB (same colours), cool in thermal; k odd: hot but differently coloured."""
        n, H = self.frames, self.height
        t = self.target
        w0 = float(np.median(t.boxes[:, 2])) * rng.uniform(0.7, 1.3)
        aspect = float(np.median(t.boxes[:, 3] / t.boxes[:, 2])) * rng.uniform(0.7, 1.3)
        scale = self._scales(rng, 0.2)
        w, h = w0 * scale, np.minimum(w0 * aspect * scale, 0.45 * H)
        key_t, key_xy = self._path(rng, max(3, n // 25 + 2), max(w0, w0 * aspect))
        centres = _smoothstep_path(key_t, key_xy, n)
        if k % 2 == 0:
            rgb = np.clip(t.rgb + rng.normal(0, 12, 3).astype(np.float32), 0, 255)
            delta = np.full(n, rng.uniform(-80.0, 80.0), np.float32)
        else:
            rgb = _texture(rng, rng.uniform(30, 225, 3))
            delta = np.full(n, float(t.delta[0]) * rng.uniform(0.8, 1.2), np.float32)
        return _Actor(self._boxes(centres, w, h), rgb, _ellipse(0.0), _ellipse(2.5), _heat_pattern(rng), delta)

    def _build_illumination(self, rng: np.random.Generator) -> None:
        n = self.frames
        t = np.arange(n, dtype=np.float64)
        drift = 1.0 + 0.2 * np.sin(2 * np.pi * t / (n * rng.uniform(0.5, 1.5) + 1.0) + rng.uniform(0, 2 * np.pi))
        step_at = rng.uniform(0.3, 0.8) * n
        factor = rng.uniform(0.45, 0.7) if rng.random() < 0.6 else rng.uniform(1.25, 1.5)
        gain = drift * np.where(t >= step_at, factor, 1.0)
        cast = 1.0 + rng.normal(0.0, 0.08, (1, 3)) * np.sin(np.pi * t / max(n, 1))[:, None]
        self._gain = (gain[:, None] * cast).astype(np.float64)  # N x 3, R, G, B

    def _build_noise(self, rng: np.random.Generator) -> None:
        H, W = self.height + _PAD, self.width + _PAD
        self._noise_up = rng.integers(0, 7, (H, W, 3), dtype=np.uint8)  # RGB noise = up - down, saturated
        self._noise_down = rng.integers(0, 7, (H, W, 3), dtype=np.uint8)
        self._noise_t = rng.normal(0.0, 6.0, (H, W)).astype(np.float32)  # ~60 mK NETD
        self._fpn_t = rng.normal(0.0, 4.0, (1, self.width)).astype(np.float32)  # column fixed-pattern noise
        self._drift_t = rng.uniform(20.0, 60.0)
        pillar = np.zeros((self.height, self.pillar_w, 3), np.float32)
        pillar[:] = rng.uniform(60, 200, 3)
        pillar[:, :: max(self.pillar_w // 6, 2)] *= 0.6  # vertical grooves
        pillar[:: max(self.height // 24, 2)] *= 0.7  # brick courses
        self._pillar_rgb = np.clip(pillar + rng.normal(0, 8, pillar.shape), 0, 255).astype(np.uint8)
        self._pillar_t = float(self.ambient.mean() + rng.uniform(-300, 100))  # near ambient, slightly cool

    def _visibility(self) -> np.ndarray:
        b = self.boxes
        x0 = np.clip(b[:, 0], 0, self.width)
        x1 = np.clip(b[:, 0] + b[:, 2], 0, self.width)
        y0 = np.clip(b[:, 1], 0, self.height)
        y1 = np.clip(b[:, 1] + b[:, 3], 0, self.height)
        in_view = (x1 > x0) & (y1 > y0)
        hidden = (x0 >= self.pillar_x) & (x1 <= self.pillar_x + self.pillar_w)
        return in_view & ~hidden

    # --- rendering ----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.frames

    def _draw(self, actor: _Actor, i: int, rgb: np.ndarray, temp: np.ndarray) -> None:
        x, y, w, h = (int(v) for v in actor.boxes[i])
        if x >= self.width or y >= self.height or x + w <= 0 or y + h <= 0:
            return
        size = (w, h)
        alpha = cv2.resize(actor.alpha, size, interpolation=cv2.INTER_LINEAR)
        _paste(rgb, cv2.resize(actor.rgb, size, interpolation=cv2.INTER_LINEAR), alpha, x, y)
        cx = int(np.clip(x + w // 2, 0, self.width - 1))
        cy = int(np.clip(y + h // 2, 0, self.height - 1))
        local = float(self.ambient[cy, cx])
        heat = local + float(actor.delta[i]) * cv2.resize(actor.heat_pattern, size, interpolation=cv2.INTER_LINEAR)
        _paste(temp, heat, cv2.resize(actor.heat_alpha, size, interpolation=cv2.INTER_LINEAR), x, y)

    def frame(self, i: int) -> SynthFrame:
        """Render frame `i` (0-based); the same (seed, i) always gives the same pixels."""
        if not 0 <= i < self.frames:
            raise IndexError(f"frame {i} out of range 0..{self.frames - 1}")
        H, W = self.height, self.width
        ox, oy = (int(v) for v in np.random.default_rng((self.seed, i)).integers(0, _PAD, 2))

        rgb = self._bg_rgb.astype(np.float32)
        temp = self.ambient.copy()
        for actor in (*self.distractors, self.target):
            self._draw(actor, i, rgb, temp)
        px = self.pillar_x
        rgb_u8 = rgb.astype(np.uint8)
        rgb_u8[:, px : px + self.pillar_w] = self._pillar_rgb
        temp[:, px : px + self.pillar_w] = self._pillar_t

        g = self._gain[i]
        rgb_u8 = cv2.multiply(rgb_u8, (float(g[0]), float(g[1]), float(g[2]), 0.0))
        rgb_u8 = cv2.add(rgb_u8, self._noise_up[oy : oy + H, ox : ox + W])
        rgb_u8 = cv2.subtract(rgb_u8, self._noise_down[oy : oy + H, ox : ox + W])

        temp += self._noise_t[oy : oy + H, ox : ox + W]
        temp += self._fpn_t + float(self._drift_t * np.sin(i / 17.0))
        np.clip(temp, 0, 65535, out=temp)
        thermal16 = (temp + 0.5).astype(np.uint16)
        return SynthFrame(rgb_u8, thermal16, self.boxes[i].copy(), bool(self.visible[i]))


def sequence_seed(seed: int, index: int) -> int:
    """The seed of sequence `index` in a dataset generated with `seed`."""
    return int(np.random.SeedSequence((int(seed), int(index))).generate_state(1)[0])


def synthetic_clip(
    seed: int, frames: int, width: int = 320, height: int = 240, crossover: bool = False, name: str | None = None
) -> Clip:
    """One `SyntheticSequence` as a `Clip`: frames rendered on demand (thermal as 16-bit counts), `gt` NaN where
    the target is hidden or out of view, initialised on the first frame's box; `distractors` holds the look-alikes'
    boxes (K x N x 4) for the training sampler."""
    seq = SyntheticSequence(seed, frames, width, height, crossover=crossover)

    def read(i: int) -> tuple[np.ndarray, np.ndarray]:
        f = seq.frame(i)
        return f.rgb, f.thermal16

    gt = np.where(seq.visible[:, None], seq.boxes, np.nan)
    clip = Clip(name or f"synthetic-{seed}", frames, read, seq.boxes[0], gt)
    clip.distractors = np.stack([d.boxes for d in seq.distractors])  # K x N x 4, for hard training crops
    return clip


def synthetic_clips(
    count: int, frames: int, seed: int, width: int = 320, height: int = 240, crossover: bool = True
) -> list[Clip]:
    """Sequences 0..count-1 of the synthetic dataset `seed` (as `write_dataset` makes them; with `crossover`,
    odd-numbered sequences have thermal crossover)."""
    return [
        synthetic_clip(
            sequence_seed(seed, k), frames, width, height, crossover and bool(k % 2), f"synthetic-{seed}-{k}"
        )
        for k in range(count)
    ]


def write_sequence(seq: SyntheticSequence, dest: Path, quality: int = 92, progress=None) -> None:
    """Write one sequence in the LasHeR layout into the new folder `dest` (built aside, then renamed into place).

    visible/v000000.jpg…, infrared/i000000.jpg… (8-bit grey thermal by `thermal_to_8bit`, the kit's one mapping), and
    init.txt, visible.txt, infrared.txt: 1-based x,y,w,h, comma separated, all-zero rows where the target is
    fully occluded or out of view (the LasHeR convention for an absent target).
    """
    dest = Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        (tmp / "visible").mkdir()
        (tmp / "infrared").mkdir()
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        gt = np.zeros((len(seq), 4))
        for i in range(len(seq)):
            f = seq.frame(i)
            ok_v = cv2.imwrite(str(tmp / "visible" / f"v{i:06d}.jpg"), cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR), params)
            ok_i = cv2.imwrite(str(tmp / "infrared" / f"i{i:06d}.jpg"), thermal_to_8bit(f.thermal16), params)
            if not (ok_v and ok_i):
                raise CKDError(f"cannot write JPEG frames into {tmp}")
            if f.visible:
                gt[i] = to_one_based(f.box[None])[0]
            if progress is not None:
                progress.update(1)
        for name in ("init.txt", "visible.txt", "infrared.txt"):
            write_boxes(tmp / name, gt, fmt="%g")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_dataset(
    out: Path, sequences: int, frames: int, seed: int, width: int = 640, height: int = 480, progress: bool = False
) -> list[str]:
    """Write `synth_000`… into `out` in the LasHeR layout; odd-numbered sequences have thermal crossover.

    Returns the sequence names. Each sequence folder appears only when complete.
    """
    if sequences < 1 or frames < 1:
        raise CKDError(f"need at least one sequence of one frame, got {sequences} sequences of {frames} frames")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CKDError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sequences * frames, unit="frame", desc="synth")
    names = []
    try:
        for j in range(sequences):
            name = f"synth_{j:03d}"
            seq = SyntheticSequence(sequence_seed(seed, j), frames, width, height, crossover=bool(j % 2))
            write_sequence(seq, out / name, progress=bar)
            names.append(name)
    finally:
        if bar is not None:
            bar.close()
    return names
