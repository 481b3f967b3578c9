"""Network configuration: one dataclass, presets for the official base model and smaller edge students."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ckd.errors import CKDError


@dataclass(frozen=True)
class CKDConfig:
    """Architecture of the CKD inference network (two ViT students + fused center head).

    The defaults are the official release (`ckd_4b_dropmae_ckd_tf_cc_mask.25_maxce_trainhead`).
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    template_size: int = 128
    search_size: int = 256
    template_factor: float = 2.0
    search_factor: float = 4.0
    ce_loc: tuple[int, ...] = (3, 6, 9)
    ce_keep_ratio: float = 0.7
    head_channels: int = 256
    share_student: bool = False
    layer_norm_eps: float = 1e-6
    drop_path: float = 0.0
    name: str = "base"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def feat_size(self) -> int:
        """Side of the search feature map (16 for 256/16)."""
        return self.search_size // self.patch_size

    @property
    def num_template_tokens(self) -> int:
        return (self.template_size // self.patch_size) ** 2

    @property
    def num_search_tokens(self) -> int:
        return self.feat_size**2

    def kept_tokens(self, keep_ratio: float | list[float] | tuple[float, ...] | None = None) -> list[int]:
        """Search tokens left after each CE layer for a keep ratio (per layer or one for all)."""
        import math

        ratios = self.keep_ratios(keep_ratio)
        n, out = self.num_search_tokens, []
        for r in ratios:
            n = math.ceil(r * n)
            out.append(n)
        return out

    def keep_ratios(self, keep_ratio: float | list[float] | tuple[float, ...] | None) -> list[float]:
        """Expand a keep ratio (None = configured, a float, or one per CE layer) to one float per CE layer."""
        if keep_ratio is None:
            keep_ratio = self.ce_keep_ratio
        if isinstance(keep_ratio, (int, float)):
            ratios = [float(keep_ratio)] * len(self.ce_loc)
        else:
            ratios = [float(r) for r in keep_ratio]
        if len(ratios) != len(self.ce_loc):
            raise CKDError(f"keep ratio needs {len(self.ce_loc)} values (one per CE layer), got {len(ratios)}")
        for r in ratios:
            if not 0.0 < r <= 1.0:
                raise CKDError(f"keep ratio must be in (0, 1], got {r}")
        return ratios

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ce_loc"] = list(self.ce_loc)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CKDConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CKDError(f"unknown config keys: {', '.join(unknown)}")
        d = dict(d)
        if "ce_loc" in d:
            d["ce_loc"] = tuple(d["ce_loc"])
        return cls(**d)

    @classmethod
    def from_record(cls, d: object, source: str) -> CKDConfig:
        """A complete config read from a file (export manifest, checkpoint JSON): every field present with its
        type and sizes that fit together; CKDError naming `source` and the first problem otherwise."""
        if not isinstance(d, dict) or not d:
            raise CKDError(f"{source}: config must be a non-empty JSON object, got {d!r:.60}")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d and f.name != "extra"]
        if missing:
            raise CKDError(f"{source}: config lacks {', '.join(missing)}")
        for name, kind in _FIELD_TYPES.items():
            value = d[name]
            numeric = kind is int or kind == (int, float)
            ok = isinstance(value, kind) and not (numeric and isinstance(value, bool))
            if not ok or (numeric and name != "drop_path" and not value > 0):
                raise CKDError(f"{source}: config {name} = {value!r} is not a {_TYPE_WORDS[kind]}")
            if isinstance(value, float) and not math.isfinite(value):
                raise CKDError(f"{source}: config {name} = {value!r} is not finite")
        if not isinstance(d.get("extra", {}), dict):
            raise CKDError(f"{source}: config extra must be a JSON object")
        ce_loc = d["ce_loc"]
        if not isinstance(ce_loc, list) or not all(type(i) is int and 0 <= i < d["depth"] for i in ce_loc):
            raise CKDError(f"{source}: config ce_loc = {ce_loc!r} is not a list of block indices below depth")
        for size in ("template_size", "search_size"):
            if d[size] % d["patch_size"]:
                raise CKDError(f"{source}: config {size} {d[size]} is not a multiple of patch_size {d['patch_size']}")
        if d["embed_dim"] % d["num_heads"]:
            raise CKDError(f"{source}: config embed_dim {d['embed_dim']} is not divisible by num_heads")
        if not 0 < d["ce_keep_ratio"] <= 1 or not 0 <= d["drop_path"] < 1:
            raise CKDError(f"{source}: config ce_keep_ratio must be in (0, 1] and drop_path in [0, 1)")
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CKDConfig:
        """A config JSON file (a checkpoint's `<stem>.json`), checked by `from_record`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CKDError(f"cannot read config {path}: {exc}") from None
        return cls.from_record(data, str(path))


# Field types a stored config must have (ce_loc and extra are checked separately); numbers must be > 0.
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "embed_dim": int,
    "depth": int,
    "num_heads": int,
    "mlp_ratio": (int, float),
    "patch_size": int,
    "template_size": int,
    "search_size": int,
    "template_factor": (int, float),
    "search_factor": (int, float),
    "ce_keep_ratio": (int, float),
    "head_channels": int,
    "share_student": bool,
    "layer_norm_eps": (int, float),
    "drop_path": (int, float),
    "name": str,
}
_TYPE_WORDS = {int: "positive integer", (int, float): "positive number", bool: "boolean", str: "string"}


PRESETS: dict[str, CKDConfig] = {
    # The official release: ViT-B/16 x2, 183.9 M parameters.
    "base": CKDConfig(),
    # Edge students: same code, narrower/shallower (CE layers scaled to the depth).
    "small": CKDConfig(embed_dim=384, depth=12, num_heads=6, head_channels=256, name="small"),
    "tiny": CKDConfig(embed_dim=192, depth=6, num_heads=3, ce_loc=(1, 3, 4), head_channels=64, name="tiny"),
    # For fast tests and the shipped CPU demo student: 2 small branches on 64/128 crops.
    "nano": CKDConfig(
        embed_dim=64,
        depth=4,
        num_heads=2,
        template_size=64,
        search_size=128,
        ce_loc=(1, 2, 3),
        head_channels=32,
        name="nano",
    ),
}


def preset(name: str) -> CKDConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise CKDError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}") from None


# The keep-ratio ladder shared by export (one graph per rung), training (random rungs) and the run-time controller.
LADDER: tuple[float, ...] = (1.0, 0.85, 0.7, 0.6, 0.5)
