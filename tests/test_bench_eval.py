"""`ckd bench --eval`: frames and ground truth of a real dataset layout (a synthetic sequence written as LasHeR)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ckd.data.synthetic import SyntheticSequence, sequence_seed, write_dataset
from ckd.errors import CKDError
from ckd_cli.main import main
from edge.bench.clip import dataset_clip


@pytest.fixture(scope="module")
def lasher_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lasher")
    write_dataset(root, sequences=1, frames=6, seed=5, width=320, height=240)
    return root


def test_dataset_clip_reads_frames_and_zero_based_ground_truth(lasher_root):
    clip = dataset_clip(f"lasher:{lasher_root}", frames=4)
    rgb, tir = clip.load(3)
    assert len(clip) == 4 and rgb.shape == (240, 320, 3) and tir.shape == (240, 320)
    truth = SyntheticSequence(sequence_seed(5, 0), frames=6, width=320, height=240)
    np.testing.assert_allclose(clip.gt[0], truth.frame(0).box, atol=1e-3)


def test_bad_eval_spec_is_a_clean_error(lasher_root):
    with pytest.raises(CKDError, match="BENCHMARK:ROOT"):
        dataset_clip(str(lasher_root), frames=4)
    with pytest.raises(CKDError, match="no sequence named"):
        dataset_clip(f"lasher:{lasher_root}", frames=4, sequence="nope")


def test_bench_cli_with_eval(lasher_root, tmp_path):
    out = tmp_path / "b.json"
    argv = ["bench", "--model", "nano", "--backends", "torch", "--keep-ratios", "0.7", "--frames", "5"]
    argv += ["--warmup", "1", "--threads", "1", "--roofline-seconds", "0", "--quiet", "--json", str(out)]
    assert main([*argv, "--eval", f"lasher:{lasher_root}"]) == 0
    doc = json.loads(out.read_text())
    assert doc["clip"]["name"].startswith("lasher/") and doc["clip"]["size"] == [320, 240]
    (row,) = doc["rows"]
    assert row["frames"] == 4 and row["keep_ratio"] == 0.7 and row["ceiling_fraction"] is None
