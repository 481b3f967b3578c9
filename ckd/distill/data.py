"""Template/search training pairs with the official OSTrack jitter and augmentation.

A sample is a pure function of (seed, sample index): the sequence, the two frames, the jitter and the
augmentation all come from `np.random.default_rng((seed, index))`. The sampler is therefore only a position in
an endless stream of indices, strided over ranks (a distributed sampler whose state is one integer), so a
resumed or re-run job sees exactly the same batches.

Sources: the synthetic generator in memory (`{"kind": "synthetic", ...}`) or any layout `open_dataset` reads
(`{"kind": "lasher", "root": ...}`; LasHeR training split first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ckd.distill.config import Augment
from ckd.errors import CKDError
from ckd.track.crop import IMAGENET_MEAN, IMAGENET_STD, crop_into


class Clip(Protocol):
    """What the sampler needs from a sequence (the readers' `Sequence` fits): gt N x 4 0-based, NaN = absent."""

    gt: np.ndarray

    def __len__(self) -> int: ...

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


class SyntheticClip:
    """A `SyntheticSequence` rendered on demand; thermal mapped to 8 bits with per-frame 1..99 % percentiles."""

    def __init__(self, seed: int, frames: int, width: int, height: int, crossover: bool = False) -> None:
        from ckd.data.synthetic import SyntheticSequence

        self.seq = SyntheticSequence(seed, frames, width, height, crossover=crossover)
        self.gt = np.where(self.seq.visible[:, None], self.seq.boxes, np.nan)

    def __len__(self) -> int:
        return len(self.seq)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from ckd.data.thermal import agc, percentiles

        f = self.seq.frame(i)
        return f.rgb, agc(f.thermal16, *percentiles(f.thermal16, 1.0, 99.0))


def build_clips(sources: tuple[dict, ...] | list[dict]) -> list[Clip]:
    """Every sequence of every configured source."""
    from ckd.data.synthetic import sequence_seed

    clips: list[Clip] = []
    for src in sources:
        kind = src.get("kind")
        if kind == "synthetic":
            n, frames, seed = int(src.get("sequences", 16)), int(src.get("frames", 100)), int(src.get("seed", 0))
            w, h = int(src.get("width", 320)), int(src.get("height", 240))
            clips += [SyntheticClip(sequence_seed(seed, j), frames, w, h, crossover=bool(j % 2)) for j in range(n)]
        elif kind:
            from ckd.data.readers import open_dataset

            if "root" not in src:
                raise CKDError(f"data source {src} needs a root folder")
            seqs = open_dataset(kind, src["root"], src.get("split"))
            wanted = src.get("sequences")
            clips += [s for s in seqs if wanted is None or s.name in set(wanted)]
        else:
            raise CKDError(f"data source {src} needs a kind (synthetic or a benchmark name)")
    if not clips:
        raise CKDError("no training sequences found in the configured data sources")
    return clips


@dataclass(frozen=True)
class SampleSpec:
    """Crop geometry of the network plus the sampling/augmentation settings."""

    template_size: int = 128
    search_size: int = 256
    template_factor: float = 2.0
    search_factor: float = 4.0
    augment: Augment = field(default_factory=Augment)


def jitter_box(box: np.ndarray, rng: np.random.Generator, center: float, scale: float) -> np.ndarray:
    """OSTrack `_get_jittered_box`: size * exp(N(0,1) * scale), centre moved by up to sqrt(area) * center / 2."""
    size = box[2:4] * np.exp(rng.standard_normal(2) * scale)
    max_offset = math.sqrt(float(np.prod(size))) * center
    c = box[:2] + 0.5 * box[2:4] + max_offset * (rng.random(2) - 0.5)
    return np.concatenate([c - 0.5 * size, size])


def box_in_crop(box: np.ndarray, extract: np.ndarray, resize: float, out_size: int) -> np.ndarray:
    """OSTrack `transform_image_to_crop`, normalised by the crop size: x, y, w, h in [0, 1] crop units."""
    c = (out_size - 1) / 2 + (box[:2] + 0.5 * box[2:4] - (extract[:2] + 0.5 * extract[2:4])) * resize
    wh = box[2:4] * resize
    return np.concatenate([c - 0.5 * wh, wh]) / out_size


def _pick_frames(gt: np.ndarray, rng: np.random.Generator, max_gap: int) -> tuple[int, int] | None:
    valid = np.flatnonzero(np.isfinite(gt).all(axis=1) & (gt[:, 2] > 1) & (gt[:, 3] > 1))
    if valid.size == 0:
        return None
    t = int(rng.choice(valid))
    after = valid[(valid >= t) & (valid <= t + max_gap)]
    near = after if after.size > 1 else valid[np.abs(valid - t) <= max_gap]
    return t, int(rng.choice(near))


def _to_chw(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    x = (img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return x.transpose(2, 0, 1)


def make_sample(clips: list[Clip], index: int, seed: int, spec: SampleSpec) -> dict[str, np.ndarray]:
    """One training sample (normalised CHW crops + search box in crop units), determined by (seed, index)."""
    rng = np.random.default_rng((seed, index))
    aug = spec.augment
    for _ in range(20):
        clip = clips[int(rng.integers(len(clips)))]
        frames = _pick_frames(clip.gt, rng, aug.max_gap)
        if frames is None:
            continue
        ti, si = frames
        t_box = jitter_box(clip.gt[ti], rng, aug.template_center_jitter, aug.template_scale_jitter)
        s_box = jitter_box(clip.gt[si], rng, aug.search_center_jitter, aug.search_scale_jitter)
        if np.prod(t_box[2:]) < 1 or np.prod(s_box[2:]) < 1:
            continue
        ts, ss = spec.template_size, spec.search_size
        crops = {}
        for kind, fi, box, factor, size in (
            ("template", ti, t_box, spec.template_factor, ts),
            ("search", si, s_box, spec.search_factor, ss),
        ):
            rgb, tir = clip.load(fi)
            out_rgb = np.empty((size, size, 3), np.uint8)
            out_tir = np.empty((size, size) + tir.shape[2:], np.uint8)
            resize = crop_into(rgb, box, factor, out_rgb)
            crop_into(tir, box, factor, out_tir)
            crops[kind] = (out_rgb, out_tir, resize)
        gt = box_in_crop(clip.gt[si], s_box, crops["search"][2], ss)
        centre = gt[:2] + gt[2:] / 2
        if not (0 <= centre[0] < 1 and 0 <= centre[1] < 1):
            continue
        return _augment(crops, gt, rng, aug)
    raise CKDError("could not draw a valid training sample in 20 tries (are the sequences' boxes valid?)")


def _augment(crops: dict, gt: np.ndarray, rng: np.random.Generator, spec: Augment) -> dict[str, np.ndarray]:
    """Joint horizontal flip, grayscale on RGB, brightness factor on every image (pytracking ToTensorAndJitter)."""
    flip = rng.random() < spec.flip_prob
    gray = rng.random() < spec.grayscale_prob
    bright = rng.uniform(max(0.0, 1 - spec.brightness), 1 + spec.brightness)
    out: dict[str, np.ndarray] = {}
    for kind, (rgb, tir, _) in crops.items():
        if gray:
            rgb = np.repeat(rgb.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
        for name, img in (("rgb", rgb), ("tir", tir)):
            x = np.clip(img.astype(np.float32) * bright, 0, 255)
            if flip:
                x = x[:, ::-1]
            out[f"{kind}_{name}"] = np.ascontiguousarray(_to_chw(x))
    if flip:
        gt = gt.copy()
        gt[0] = 1.0 - gt[0] - gt[2]
    out["box"] = gt.astype(np.float32)
    return out


class StreamSampler:
    """Distributed sampler over an endless index stream: rank r of `world` takes indices pos*world + r."""

    def __init__(self, rank: int = 0, world: int = 1, position: int = 0) -> None:
        self.rank, self.world, self.position = rank, world, position

    def next_indices(self, batch: int) -> list[int]:
        out = [(self.position + j) * self.world + self.rank for j in range(batch)]
        self.position += batch
        return out

    def state_dict(self) -> dict:
        return {"position": self.position, "world": self.world}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


def collate(samples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}
