"""Checkpoint I/O: official `.pth.tar` files (`{'net': state_dict}`) and the kit's safetensors + JSON config.

Loading is always strict: any missing, unexpected or shape-mismatched key is a CKDError that names them.
Pickles are read with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ckd.atomic import atomic_path, write_json_atomic
from ckd.errors import CKDError
from ckd.model.config import CKDConfig, preset
from ckd.model.network import CKDNet

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_STUDENT = ASSETS / "demo_student.safetensors"


def config_path(weights: Path) -> Path:
    """The JSON config beside a safetensors file: `<stem>.json`."""
    return weights.with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], CKDConfig | None]:
    """Read weights and, for the kit's format, the config (checked complete). Official pickles return config None.
    Weights that are NaN or infinite are refused."""
    path = Path(path)
    if not path.is_file():
        raise CKDError(f"checkpoint not found: {path}")
    state, cfg = _read(path)
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise CKDError(f"{path}: weight {bad} holds NaN or infinite values")
    return state, cfg


def _read(path: Path) -> tuple[dict[str, torch.Tensor], CKDConfig | None]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CKDError(f"{path}: not a readable safetensors file ({exc})") from None
        cfg_file = config_path(path)
        if not cfg_file.is_file():
            raise CKDError(f"{path}: its config {cfg_file.name} is missing beside it")
        return state, CKDConfig.load(cfg_file)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CKDError(f"{path}: not a readable PyTorch checkpoint ({msg[:160]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("net"), dict):
        obj = obj["net"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CKDError(f"{path}: no state dict found (expected a dict of tensors or {{'net': state_dict}})")
    obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj, None


def infer_official_config(state: dict[str, torch.Tensor], path: str | Path = "checkpoint") -> CKDConfig:
    """An official checkpoint is recognised by its keys; it is always the base architecture."""
    key = "rgb_branch.patch_embed.proj.weight"
    if key not in state or "box_head.conv1_ctr.0.weight" not in state:
        raise CKDError(f"{path}: not a CKD checkpoint (no {key} / box_head keys) and no config given")
    cfg = preset("base")
    if state[key].shape[0] != cfg.embed_dim:
        raise CKDError(
            f"{path}: embed width {state[key].shape[0]} but official CKD is {cfg.embed_dim}; "
            "save it with the kit's format (safetensors + config)"
        )
    return cfg


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Strict load with a readable error listing every mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label} {len(items)}: {', '.join(items[:5])}{more}")
        raise CKDError(f"{source} does not fit this architecture: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_model(path: str | Path | None = None, config: CKDConfig | None = None) -> CKDNet:
    """Build the network for a checkpoint and load it strictly; `None` loads the shipped demo student."""
    if path is None:
        path = DEMO_STUDENT
        if not path.is_file():
            raise CKDError(f"no --checkpoint given and the demo student {path} is not installed")
    state, stored = read_state_dict(path)
    cfg = config or stored or infer_official_config(state, path)
    model = CKDNet(cfg)
    load_into(model, state, path)
    return model.eval()


def save_model(model: CKDNet, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """The kit's format: `<name>.safetensors` + `<name>.json` (the config), both written atomically."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    write_json_atomic(config_path(path), model.cfg.to_dict())
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata or {})
    return path


def save_official(model: CKDNet, path: str | Path) -> Path:
    """The official layout: a `{'net': state_dict}` pickle (`.pth.tar`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"net": model.state_dict()}, tmp)
    return path
