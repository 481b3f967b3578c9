"""Which graphs a TensorRT generation parses: the export layout per target, decided in one place.

An export for every generation is a folder whose graphs keep LayerNorm as one node (ONNX Runtime, TensorRT 8.6
and 10) and a sub-export `trt8.5/` with LayerNorm decomposed (TensorRT 8.5 has no importer for it). Each folder's
`manifest.json` says what it is for in `target`; `graphs_for` picks the folder for an installed TensorRT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ckd.errors import CKDError
from edge.trt.onnx_support import GENERATIONS, generation

# Nodes of a decomposed LayerNorm carry this in their names; the builder pins those layers to FP32.
LN_FP32_MARKER = "/ln_fp32/"
# Generations that need their own graphs (a sub-export named trt<generation>).
DECOMPOSED_LAYERNORM = ("8.5",)


def parse_generations(text: str) -> tuple[str, ...]:
    """`--trt` values: 'all', or a comma list of 8.5, 8.6, 10 (full versions such as 8.5.2 allowed)."""
    if text.strip().lower() in ("all", ""):
        return GENERATIONS
    if text.strip().lower() == "none":
        return ()
    gens = {generation(v.strip()) for v in text.split(",") if v.strip()}
    return tuple(g for g in GENERATIONS if g in gens)


def split_targets(generations: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(generations the main folder serves, generations that get a sub-export of their own)."""
    gens = tuple(g for g in GENERATIONS if g in {generation(x) for x in generations})
    node = tuple(g for g in gens if g not in DECOMPOSED_LAYERNORM)
    decomposed = tuple(g for g in gens if g in DECOMPOSED_LAYERNORM)
    if not node:
        return decomposed, ()
    return node, decomposed


def graph_target(generations: Sequence[str]) -> dict:
    """The manifest's `target` for graphs made for these generations (LayerNorm decomposed only for 8.5 alone)."""
    gens = list(generations)
    decomposed = bool(gens) and all(g in DECOMPOSED_LAYERNORM for g in gens)
    return {"tensorrt": gens, "layernorm": "decomposed" if decomposed else "node"}


def serves(target: dict | None, gen: str) -> bool:
    """Does a manifest `target` serve generation `gen`? An export older than targets (None) is taken as it is."""
    return target is None or gen in (target.get("tensorrt") or [])


def graphs_for(directory: str | Path, tensorrt_version: str) -> Path:
    """The folder of `directory` (itself or its `trt<gen>/` sub-export) whose graphs TensorRT `tensorrt_version`
    parses; CKDError naming what to re-export when there is none."""
    from edge.manifest import MANIFEST_NAME, Manifest

    gen = generation(tensorrt_version)
    directory = Path(directory)
    for folder in (directory, directory / f"trt{gen}"):
        if (folder / MANIFEST_NAME).is_file() and serves(Manifest.load(folder, verify=False).target, gen):
            return folder
    cpu_only = (directory / MANIFEST_NAME).is_file() and Manifest.load(directory, verify=False).target == graph_target(
        ()
    )
    raise CKDError(
        f"{directory}: no graphs for TensorRT {gen}"
        + (" (these are ONNX Runtime CPU graphs)" if cpu_only else "")
        + f": re-export with `ckd export --trt {gen}` or `--trt all`, INT8 with `ckd quantize --format trt`"
    )


def folders_for(directory: str | Path, generations: Sequence[str]) -> dict[str, Path]:
    """`graphs_for` of every generation: {generation: folder}."""
    return {gen: graphs_for(directory, gen) for gen in generations}


def drop_stale_subexports(directory: Path, keep: Sequence[str] = ()) -> None:
    """Remove the manifest of every `trt<gen>/` sub-export not in `keep`: one left by an earlier run for other
    targets must not be picked up by `graphs_for`."""
    from edge.manifest import MANIFEST_NAME

    for gen in DECOMPOSED_LAYERNORM:
        if gen not in keep:
            (Path(directory) / f"trt{gen}" / MANIFEST_NAME).unlink(missing_ok=True)
