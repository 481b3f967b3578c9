"""`ckd forward`: the raw network on saved inputs, for parity checks between backends and the official code."""

from __future__ import annotations

import argparse

from ckd_cli.common import add_checkpoint_arg, float_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "forward",
        help="run the raw network on crops from an .npz (parity tool)",
        description="Run the raw CKD network on normalised crops and save its four outputs. IN.npz holds float32 "
        "template_rgb, template_tir (1x3xTxT), search_rgb, search_tir (1x3xSxS) and optionally template_mask "
        "(1xNt bool, default the centre-point mask). OUT.npz gets score_map, size_map, offset_map, pred_boxes "
        "(cx, cy, w, h normalised to the search crop).",
    )
    add_checkpoint_arg(p)
    p.add_argument("--inputs", required=True, metavar="IN.npz")
    p.add_argument("--out", required=True, metavar="OUT.npz")
    p.add_argument(
        "--keep-ratio",
        type=float_list("keep ratio"),
        default=None,
        help="one value for all CE layers or one per CE layer (e.g. 0.7 or 1.0,0.7,0.7); 1.0 disables elimination; "
        "default: the model's configured ratio",
    )
    p.add_argument("--backend", choices=["torch"], default="torch", help="runtime (default torch)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import zipfile
    from pathlib import Path

    import numpy as np
    import torch

    from ckd.atomic import atomic_path
    from ckd.errors import CKDError
    from ckd.model.checkpoint import load_model
    from ckd.track.backend import INPUT_NAMES, OUTPUT_NAMES, input_shapes

    model = load_model(args.checkpoint)
    cfg = model.cfg
    try:
        data = dict(np.load(args.inputs, allow_pickle=False))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CKDError(f"cannot read inputs {args.inputs}: {exc}") from None
    shapes = input_shapes(cfg.template_size, cfg.search_size)
    tensors = []
    for name in INPUT_NAMES:
        if name not in data:
            raise CKDError(f"{args.inputs}: missing array {name!r} (needs {', '.join(INPUT_NAMES)})")
        arr = np.asarray(data[name], dtype=np.float32)
        if arr.shape != shapes[name]:
            raise CKDError(f"{args.inputs}: {name} has shape {arr.shape}, this model needs {shapes[name]}")
        tensors.append(torch.from_numpy(arr))
    mask = None
    if "template_mask" in data:
        mask = torch.from_numpy(np.asarray(data["template_mask"], dtype=bool).reshape(1, -1))
        if mask.shape[1] != cfg.num_template_tokens:
            raise CKDError(f"template_mask needs {cfg.num_template_tokens} entries, got {mask.shape[1]}")
    keep = args.keep_ratio[0] if args.keep_ratio and len(args.keep_ratio) == 1 else args.keep_ratio
    with torch.inference_mode():
        out = model(*tensors, template_mask=mask, keep_ratio=keep)
    arrays = {k: out[k].numpy() for k in OUTPUT_NAMES}
    dest = Path(args.out)
    with atomic_path(dest, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    print(f"kept search tokens per CE layer: {model.last_kept}; wrote {dest}")
    return 0
