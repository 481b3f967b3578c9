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

import numpy as np
import torch

from ckd.data.clip import Clip, FrameError
from ckd.distill.config import Augment
from ckd.errors import CKDError
from ckd.track.crop import crop_into, normalize_into
from ckd.track.tracker import clip_box


def build_clips(sources: tuple[dict, ...] | list[dict], augment: Augment | None = None) -> list[Clip]:
    """Every sequence of every configured source.

    Negative and reappearance samples (`augment.negative_prob`, `reappear_prob` > 0) read a NaN ground-truth row as
    "target absent"; they are refused when a sequence's ground truth is sparse (`Clip.gt_sparse`: NaN rows there are
    also frames nobody annotated, where the target may well be in view)."""
    clips: list[Clip] = []
    for src in sources:
        kind = src.get("kind")
        if kind == "synthetic":
            from ckd.data.synthetic import synthetic_clips

            n, frames, seed = int(src.get("sequences", 16)), int(src.get("frames", 100)), int(src.get("seed", 0))
            clips += synthetic_clips(n, frames, seed, int(src.get("width", 320)), int(src.get("height", 240)))
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
    sparse = [c.name for c in clips if c.gt_sparse]
    if augment is not None and (augment.negative_prob > 0 or augment.reappear_prob > 0) and sparse:
        raise CKDError(
            f"augment.negative_prob/reappear_prob need ground truth on every frame, but {len(sparse)} sequence(s) "
            f"are annotated sparsely or not to the end (first: {sparse[0]}); set both to 0 or leave those out"
        )
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
    valid = np.flatnonzero(_valid(gt))
    if valid.size == 0:
        return None
    t = int(rng.choice(valid))
    after = valid[(valid >= t) & (valid <= t + max_gap)]
    near = after if after.size > 1 else valid[np.abs(valid - t) <= max_gap]
    return t, int(rng.choice(near))


def _to_chw(img: np.ndarray) -> np.ndarray:
    """HxWx3 or HxW crop -> normalised 3xHxW float32, by the tracker's own `normalize_into`."""
    out = np.empty((1, 3, *img.shape[:2]), np.float32)
    normalize_into(img, out)
    return out[0]


def _valid(gt: np.ndarray) -> np.ndarray:
    return np.isfinite(gt).all(axis=1) & (gt[:, 2] > 1) & (gt[:, 3] > 1)


def _centre(box: np.ndarray) -> np.ndarray:
    return box[:2] + 0.5 * box[2:4]


def _distractor_near(clip: Clip, fi: int, rng: np.random.Generator, spec: SampleSpec) -> np.ndarray | None:
    """With probability `augment.distractor_prob`, the centre of the look-alike nearest the target in frame `fi`
    (clips that know their distractors: synthetic ones), else None."""
    if spec.augment.distractor_prob <= 0 or clip.distractors is None:
        return None
    if rng.random() >= spec.augment.distractor_prob:
        return None
    boxes = clip.distractors
    centres = boxes[:, fi, :2] + 0.5 * boxes[:, fi, 2:4]
    target = _centre(clip.gt[fi]) if _valid(clip.gt[fi : fi + 1])[0] else centres.mean(axis=0)
    return centres[int(np.argmin(np.linalg.norm(centres - target, axis=1)))]


def _positive_search(clip: Clip, si: int, rng: np.random.Generator, spec: SampleSpec) -> np.ndarray:
    """The search box: the OSTrack jitter around the target, or (`distractor_prob`) centred between the target and
    the nearest look-alike when both fit in one crop, so the crop holds the target and its distractor."""
    aug, box = spec.augment, clip.gt[si]
    other = _distractor_near(clip, si, rng, spec)
    if other is not None:
        size = box[2:4] * np.exp(rng.standard_normal(2) * aug.search_scale_jitter)
        offset = other - _centre(box)
        if np.abs(offset).max() < 0.7 * math.sqrt(float(np.prod(size))) * spec.search_factor:
            c = _centre(box) + rng.uniform(0.3, 0.7) * offset
            return np.concatenate([c - 0.5 * size, size])
    return jitter_box(box, rng, aug.search_center_jitter, aug.search_scale_jitter)


def _reappear_search(
    clip: Clip, frame_hw: tuple[int, ...], rng: np.random.Generator, spec: SampleSpec
) -> tuple[int, np.ndarray] | None:
    """A frame among the first few after the target comes back (end of an occlusion or out-of-view stretch), cut
    around where it was last seen, as a tracker that held its estimate meets it: the last visible box clipped to the
    frame as the tracker clips its state, with the usual scale jitter and a small centre jitter. None if the clip
    has no such stretch."""
    valid = _valid(clip.gt)
    back = np.flatnonzero(valid[1:] & ~valid[:-1]) + 1
    back = back[[bool(valid[:b].any()) for b in back]]
    if back.size == 0:
        return None
    b = int(rng.choice(back))
    last = int(np.flatnonzero(valid[:b])[-1])
    after = np.flatnonzero(valid[b : b + 6]) + b
    si = int(rng.choice(after))
    held = clip_box(clip.gt[last], frame_hw[0], frame_hw[1], margin=10)
    return si, jitter_box(held, rng, 1.0, spec.augment.search_scale_jitter)


def _negative_search(
    clip: Clip, ti: int, frame_hw: tuple[int, ...], rng: np.random.Generator, spec: SampleSpec
) -> tuple[int, np.ndarray] | None:
    """A search frame and box whose crop does not show the target: a frame where the target is absent, cropped
    where it was last seen (occlusion, out of view), or any frame cropped away from the target, on a look-alike
    (`distractor_prob`) or anywhere (None: the drawn crop would show the target)."""
    aug, gt = spec.augment, clip.gt
    valid = _valid(gt)
    lo, hi = max(0, ti - aug.max_gap), min(len(gt), ti + aug.max_gap + 1)
    absent = np.flatnonzero(~valid[lo:hi]) + lo
    if absent.size and rng.random() < 0.5:
        si = int(rng.choice(absent))
        seen = np.flatnonzero(valid[: si + 1])
        last = int(seen[-1]) if seen.size else int(np.flatnonzero(valid)[0])
        return si, jitter_box(gt[last], rng, aug.search_center_jitter, aug.search_scale_jitter)
    si = int(rng.integers(lo, hi))
    size = (gt[si] if valid[si] else gt[ti])[2:] * np.exp(rng.standard_normal(2) * aug.search_scale_jitter)
    side = math.sqrt(float(np.prod(size))) * spec.search_factor
    centre = _distractor_near(clip, si, rng, spec)
    if centre is None:
        centre = rng.uniform([0.0, 0.0], [frame_hw[1], frame_hw[0]])
    if valid[si]:
        t0, t1 = gt[si, :2], gt[si, :2] + gt[si, 2:]
        if np.all((t1 > centre - side / 2) & (t0 < centre + side / 2)):
            return None
    return si, np.concatenate([centre - size / 2, size])


def make_sample(clips: list[Clip], index: int, seed: int, spec: SampleSpec) -> dict[str, np.ndarray]:
    """One training sample, determined by (seed, index): normalised CHW crops of both modalities (frames from
    `Clip.load`, so thermal through the kit's one mapping), the search box in crop units and `present`.

    With `augment.negative_prob` > 0 that share of samples has no target in the search crop (`present` 0; `box` is
    the estimate the crop was cut around), so the score map learns to stay low where the target is not and the
    head to keep its estimate; with `augment.distractor_prob` > 0
    crops of clips that know their look-alikes (synthetic) are drawn around them that often; with
    `augment.reappear_prob` > 0 that share of positives shows the target just back from an absence, cut where it was
    last seen. Unreadable frames are skipped.
    """
    rng = np.random.default_rng((seed, index))
    aug = spec.augment
    negative = aug.negative_prob > 0 and rng.random() < aug.negative_prob
    reappear = not negative and aug.reappear_prob > 0 and rng.random() < aug.reappear_prob
    ts, ss = spec.template_size, spec.search_size
    for _ in range(20):
        clip = clips[int(rng.integers(len(clips)))]
        frames = _pick_frames(clip.gt, rng, aug.max_gap)
        if frames is None:
            continue
        ti, si = frames
        t_box = jitter_box(clip.gt[ti], rng, aug.template_center_jitter, aug.template_scale_jitter)
        try:
            template = clip.load(ti)
            if negative:
                search = _negative_search(clip, ti, template[0].shape[:2], rng, spec)
                if search is None:
                    continue
                si, s_box = search
            elif reappear:
                search = _reappear_search(clip, template[0].shape[:2], rng, spec)
                if search is None:
                    continue
                si, s_box = search
            else:
                s_box = _positive_search(clip, si, rng, spec)
            pair = template if si == ti else clip.load(si)
        except FrameError:
            continue
        if np.prod(t_box[2:]) < 1 or np.prod(s_box[2:]) < 1:
            continue
        crops = {
            "template": _crop_pair(template, t_box, spec.template_factor, ts),
            "search": _crop_pair(pair, s_box, spec.search_factor, ss),
        }
        if negative:  # the box to keep: the estimate the crop was cut around
            return _augment(crops, box_in_crop(s_box, s_box, crops["search"][2], ss), rng, aug, present=False)
        gt = box_in_crop(clip.gt[si], s_box, crops["search"][2], ss)
        centre = gt[:2] + gt[2:] / 2
        if not (0 <= centre[0] < 1 and 0 <= centre[1] < 1):
            continue
        return _augment(crops, gt, rng, aug)
    raise CKDError("could not draw a valid training sample in 20 tries (are the sequences' boxes valid?)")


def _crop_pair(pair: tuple[np.ndarray, np.ndarray], box: np.ndarray, factor: float, size: int) -> tuple:
    """(RGB crop, thermal crop, resize factor) of one frame pair, cut as the tracker cuts."""
    rgb, tir = pair
    out_rgb, out_tir = np.empty((size, size, 3), np.uint8), np.empty((size, size) + tir.shape[2:], np.uint8)
    resize = crop_into(rgb, box, factor, out_rgb)
    crop_into(tir, box, factor, out_tir)
    return out_rgb, out_tir, resize


def _augment(
    crops: dict, gt: np.ndarray, rng: np.random.Generator, spec: Augment, present: bool = True
) -> dict[str, np.ndarray]:
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
    out["box"], out["present"] = gt.astype(np.float32), np.float32(present)
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
