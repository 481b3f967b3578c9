"""Command-line arguments shared by `ckd distill` and `python -m ckd.distill` (the torchrun entry point)."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Coupled knowledge distillation (CKD): RGB and thermal teachers, two student ViTs and the fused head, trained "
    "stage by stage as the config lists them (teacher pretraining, stage 1 CKD with style/content distillation and "
    "masked modeling, stage 2 MCE head fine-tune over the keep-ratio ladder). Several processes: "
    "`torchrun --nproc_per_node N -m ckd.distill --config FILE` (gloo on CPU, NCCL on GPUs). The run folder gets "
    "checkpoint.pt (resumable), log.csv, tensorboard/ and finally student.safetensors + student.json, which "
    "`ckd track/export/run/bench --checkpoint` load directly."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="distillation config, YAML or JSON (see ckd/distill/configs/)")
    p.add_argument("--out", default="out/distill", help="run folder (default out/distill)")
    p.add_argument("--resume", action="store_true", help="continue exactly where <out>/checkpoint.pt stopped")


def run_from_args(args: argparse.Namespace) -> int:
    from ckd.distill.config import load_config
    from ckd.distill.train import train

    path = train(load_config(args.config), args.out, resume=args.resume)
    print(f"-> {path}")
    return 0
