"""`ckd check-trt`: offline TensorRT lint of an export/quantize folder (no GPU, no TensorRT needed)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-trt",
        help="list every node TensorRT 8.5 / 8.6 / 10 would refuse in an export or quantize folder",
        description="Read every graph of an export (`ckd export`) or INT8 folder (`ckd quantize`) and list each node "
        "the TensorRT ONNX parser of the given version would refuse: operators without importer, tensor types it "
        "does not take, inputs that must be initializers, and explicit-quantization rules (INT8 only, zero point "
        "0, float bias, per-channel weights only). The rules come from onnx-tensorrt's operator tables at 8.5-GA, "
        "8.6-GA and 10.1-GA (edge/trt/onnx_support.py). For a generation with a sub-export of its own (trt8.5/) "
        "that sub-export is checked. Exit 2 when any node would be refused.",
    )
    p.add_argument("dir", metavar="DIR", help="export or quantize folder (manifest.json + rung graphs)")
    p.add_argument(
        "--trt",
        default="all",
        metavar="VERSION",
        help="TensorRT generation(s): 8.5, 8.6, 10 (comma list) or all (default); a full version such as 8.5.2 "
        "picks its generation",
    )
    p.add_argument("--max-lines", type=int, default=50, help="findings printed per graph folder (default 50)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ckd.errors import CKDError
    from edge.manifest import Manifest
    from edge.trt.lint import lint_export, summary
    from edge.trt.targets import graphs_for, parse_generations

    gens = parse_generations(args.trt)
    if not gens:
        raise CKDError("--trt: name at least one of 8.5, 8.6, 10 (or all)")
    failed = []
    for gen in gens:
        try:
            folder = graphs_for(args.dir, gen)
        except CKDError:
            folder = Path(args.dir)  # no folder made for this generation: check what there is
        manifest = Manifest.load(folder)
        findings = lint_export(manifest, gen)
        graphs = len(manifest.rungs)
        if not findings:
            print(f"TensorRT {gen}: {folder}: {graphs} graph(s) clean")
            continue
        failed.append(f"TensorRT {gen}: {len(findings)}")
        print(f"TensorRT {gen}: {folder}: {len(findings)} node(s) refused ({summary(findings)})")
        for f in findings[: args.max_lines]:
            print(f"  {f}")
        if len(findings) > args.max_lines:
            print(f"  ... {len(findings) - args.max_lines} more (--max-lines)")
    if failed:
        raise CKDError(f"{args.dir}: nodes TensorRT would refuse ({'; '.join(failed)})")
    return 0
