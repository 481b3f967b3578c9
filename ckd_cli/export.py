"""`ckd export`: one ONNX graph per keep-ratio rung + manifest.json, each verified against torch."""

from __future__ import annotations

import argparse

from ckd_cli.common import add_checkpoint_arg, float_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export ONNX graphs (one per keep-ratio rung) with a manifest",
        description="Export the CKD network to static ONNX graphs (opset >= 17), one per candidate-elimination keep "
        "ratio, write manifest.json (config, rung -> file, input/output names and shapes, sha256 of every file, "
        "source checkpoint hash) and verify each graph against PyTorch on fresh random inputs (max abs error).",
    )
    add_checkpoint_arg(p)
    p.add_argument(
        "--preset",
        default=None,
        help="export a randomly initialised model of this preset (base/small/tiny/nano) instead of a checkpoint "
        "(for latency work and tests; seeded by --seed)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for --preset weights (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for the graphs and manifest.json")
    p.add_argument(
        "--keep-ratios",
        type=float_list("keep ratios"),
        default=[1.0, 0.85, 0.7, 0.6, 0.5],
        help="comma-separated rungs (default 1.0,0.85,0.7,0.6,0.5)",
    )
    p.add_argument(
        "--trt",
        default="all",
        metavar="VERSIONS",
        help="TensorRT generations the graphs must parse on: 8.5, 8.6, 10 (comma list), all (default) or none. "
        "8.5 has no LayerNormalization importer: beside 8.6/10 it gets the sub-export DIR/trt8.5 (LayerNorm "
        "decomposed, built in FP32). Each graph is checked as `ckd check-trt` does; no manifest is written on a "
        "refusal",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    p.add_argument("--no-verify", action="store_true", help="skip the torch-vs-ONNX Runtime parity check")
    p.add_argument(
        "--tolerance", type=float, default=1e-3, help="max abs error allowed in the parity check (default 1e-3)"
    )
    p.set_defaults(func=run)


def load_source(checkpoint: str | None, preset_name: str | None, seed: int = 0):
    """The model to export and the hash naming its source (checkpoint sha256 or `random:<preset>:<seed>`)."""
    import torch

    from ckd.errors import CKDError
    from ckd.model.checkpoint import DEMO_STUDENT, file_sha256, load_model
    from ckd.model.config import preset
    from ckd.model.network import CKDNet

    if preset_name and checkpoint:
        raise CKDError("give either --checkpoint or --preset, not both")
    if preset_name:
        torch.manual_seed(seed)
        return CKDNet(preset(preset_name)).eval(), f"random:{preset_name}:{seed}"
    model = load_model(checkpoint)
    return model, file_sha256(checkpoint or DEMO_STUDENT)


def run(args: argparse.Namespace) -> int:
    from ckd.errors import CKDError
    from edge.export import export_rungs, op_counts
    from edge.trt.targets import parse_generations

    trt = parse_generations(args.trt)
    model, source = load_source(args.checkpoint, args.preset, args.seed)
    manifest, errors = export_rungs(
        model,
        args.out,
        args.keep_ratios,
        source,
        opset=args.opset,
        verify=not args.no_verify,
        progress=True,
        tensorrt=trt,
    )
    worst = None
    for rung in manifest.rungs:
        err = errors.get(rung.keep_ratio)
        ops = op_counts(manifest.path(rung))
        line = f"k={rung.keep_ratio:.2f} {rung.file}: {sum(ops.values())} nodes"
        line += f" (MatMul {ops['MatMul']}, LayerNormalization {ops['LayerNormalization']}, TopK {ops['TopK']})"
        if err is not None:
            e = max(err.values())
            line += f", max abs error vs torch {e:.2e}"
            if e > args.tolerance and (worst is None or e > worst[1]):
                worst = (rung.file, e)
        print(line)
    print(f"wrote {manifest.directory / 'manifest.json'}")
    for gen in trt:
        print(
            f"TensorRT {gen}: graphs parse (checked offline) in {manifest.directory}"
            + ("/trt8.5" if gen == "8.5" and len(trt) > 1 else "")
        )
    if worst:
        raise CKDError(f"{worst[0]}: ONNX output differs from torch by {worst[1]:.2e} (> --tolerance {args.tolerance})")
    return 0
