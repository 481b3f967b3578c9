"""Distillation run configuration: a YAML/JSON file -> `DistillConfig` (stages, data, augmentation, logging)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ckd.errors import CKDError
from ckd.model.config import LADDER, CKDConfig, preset


@dataclass(frozen=True)
class Augment:
    """Pair sampling and augmentation; defaults are the official OSTrack values."""

    max_gap: int = 200
    search_center_jitter: float = 3.0
    search_scale_jitter: float = 0.25
    template_center_jitter: float = 0.0
    template_scale_jitter: float = 0.0
    grayscale_prob: float = 0.05
    flip_prob: float = 0.5
    brightness: float = 0.2
    negative_prob: float = 0.0  # share of target-absent search crops (not in the official recipe)
    distractor_prob: float = 0.0  # share of search crops drawn around a known look-alike (synthetic clips)
    reappear_prob: float = 0.0  # share of positives just after an absence, cut where the target was last seen


@dataclass(frozen=True)
class StageConfig:
    """One training stage. Defaults are the official stage-1 (CKD) recipe."""

    name: str = "ckd"  # "teacher" (pretrain teachers), "ckd" (stage 1) or "mce" (stage 2)
    steps: int = 180_000  # 30 epochs x 60k samples / batch 10
    batch_size: int = 10
    lr_head: float = 5e-5  # heads (fused and teachers')
    lr_backbone: float = 5e-6  # student ViTs
    lr_teacher: float = 5e-6  # teacher ViTs
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    mask_prob: float = 0.25  # masked modeling: per search patch
    keep_ratios: tuple[float, ...] = (1.0,)  # drawn uniformly per step (stage 2: the whole ladder)
    freeze_teachers: bool = False
    lr_drop_step: int | None = None  # multiply every lr by lr_drop_factor from this step on (None: constant lr)
    lr_drop_factor: float = 0.1


@dataclass(frozen=True)
class DistillConfig:
    student: CKDConfig = field(default_factory=CKDConfig)
    teacher: CKDConfig = field(default_factory=CKDConfig)
    stages: tuple[StageConfig, ...] = (StageConfig(),)
    data: tuple[dict, ...] = ({"kind": "lasher", "root": "data/LasHeR", "split": "train"},)
    init_students_from_teachers: bool = True
    teacher_init: str | None = None  # kit checkpoint of pretrained teachers (a training checkpoint)
    init_from: str | None = None  # continue from a previous run's checkpoint.pt (whole training model)
    loss_weights: dict = field(default_factory=dict)  # override giou/l1/focal/style/content/teacher
    augment: Augment = field(default_factory=Augment)
    drop_path: float = 0.1
    seed: int = 0
    ckpt_every: int = 1000
    log_every: int = 50
    tensorboard: bool = True
    amp: bool = True  # mixed precision, GPU only
    threads: int | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["student"], d["teacher"] = self.student.to_dict(), self.teacher.to_dict()
        return d


def _model_config(value, what: str, drop_path: float) -> CKDConfig:
    """A preset name, or {"preset": name, ...overrides}, or a full dict."""
    if isinstance(value, str):
        value = {"preset": value}
    if not isinstance(value, dict):
        raise CKDError(f"distill config: {what} must be a preset name or a mapping, got {value!r}")
    value = dict(value)
    base = preset(value.pop("preset", "base")).to_dict()
    base.update(value)
    base["drop_path"] = value.get("drop_path", drop_path)
    return CKDConfig.from_dict(base)


def _check_keys(d: dict, cls: type, what: str) -> dict:
    if not isinstance(d, dict):
        raise CKDError(f"distill config: {what} must be a mapping, got {d!r}")
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise CKDError(f"distill config: unknown {what} keys {', '.join(unknown)}")
    return dict(d)


def _stage(d: dict) -> StageConfig:
    d = _check_keys(d, StageConfig, "stage")
    if d.get("name", "ckd") not in ("teacher", "ckd", "mce"):
        raise CKDError(f"distill config: stage name must be teacher, ckd or mce, got {d['name']!r}")
    if d.get("keep_ratios") == "ladder" or (d.get("name") == "mce" and "keep_ratios" not in d):
        d["keep_ratios"] = LADDER
    if "keep_ratios" in d:
        d["keep_ratios"] = tuple(float(r) for r in d["keep_ratios"])
    return StageConfig(**d)


def config_from_dict(d: dict) -> DistillConfig:
    d = _check_keys(d, DistillConfig, "top-level")
    drop_path = float(d.get("drop_path", 0.1))
    d["student"] = _model_config(d.get("student", "base"), "student", drop_path)
    d["teacher"] = _model_config(d.get("teacher", "base"), "teacher", drop_path)
    if "stages" in d:
        d["stages"] = tuple(_stage(s) for s in d["stages"])
    if "augment" in d:
        d["augment"] = Augment(**_check_keys(d["augment"], Augment, "augment"))
    if "data" in d:
        d["data"] = tuple(dict(s) for s in d["data"])
    return DistillConfig(**d)


def load_config(path: str | Path) -> DistillConfig:
    """Read a YAML (or JSON) distillation config."""
    import yaml

    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CKDError(f"cannot read distill config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CKDError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise CKDError(f"{path}: a distill config must be a mapping of keys")
    try:
        return config_from_dict(d)
    except TypeError as exc:
        raise CKDError(f"{path}: {exc}") from None


def dump_config(cfg: DistillConfig) -> str:
    return json.dumps(cfg.to_dict(), indent=2, default=list)
