"""Training loop: stage-2 freezing, exact resume after a killed run, 2-process DDP, small students, sampling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ckd.data.clip import Clip
from ckd.distill.config import Augment, config_from_dict, load_config
from ckd.distill.data import SampleSpec, box_in_crop, build_clips, make_sample
from ckd.distill.model import DistillModel, layer_map
from ckd.distill.train import CHECKPOINT, train
from ckd.model.checkpoint import load_model
from ckd.model.config import LADDER, preset

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def tiny(stages: list[dict], **kw) -> dict:
    d = {
        "student": "nano",
        "teacher": "nano",
        "drop_path": 0.1,  # exercises the global torch RNG, which the checkpoint must restore
        "seed": 3,
        "data": [{"kind": "synthetic", "sequences": 2, "frames": 30, "seed": 1, "width": 160, "height": 120}],
        "stages": stages,
        "ckpt_every": 2,
        "log_every": 1,
        "tensorboard": False,
        "threads": 1,
    }
    d.update(kw)
    return d


def write_config(tmp_path: Path, d: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_shipped_configs_load():
    base = load_config(ROOT / "ckd/distill/configs/base.yaml")
    assert base.student.embed_dim == 768 and base.stages[0].lr_backbone == 5e-6 and base.stages[0].mask_prob == 0.25
    assert base.stages[1].name == "mce" and base.stages[1].keep_ratios == LADDER
    small = load_config(ROOT / "ckd/distill/configs/small_from_base.yaml")
    assert small.student.embed_dim == 384 and small.teacher.embed_dim == 768
    demo = load_config(ROOT / "ckd/distill/configs/demo.yaml")
    assert [s.name for s in demo.stages] == ["teacher", "ckd", "mce"]
    assert demo.student.ce_keep_ratio == 1.0 and demo.stages[2].keep_ratios == LADDER


def test_stage2_trains_head_only_and_keeps_backbone(tmp_path):
    cfg = config_from_dict(tiny([{"name": "mce", "steps": 3, "batch_size": 2, "lr_head": 1e-2}]))
    torch.manual_seed(cfg.seed)
    before = DistillModel(cfg.student, cfg.teacher).student.state_dict()
    student = load_model(train(cfg, tmp_path))
    after = student.state_dict()
    for k, v in after.items():
        if k.startswith(("rgb_branch.", "tir_branch.")):
            assert torch.equal(v, before[k]), k
    changed = [k for k, v in after.items() if k.startswith("box_head.") and not torch.equal(v, before[k])]
    assert any(k.endswith("weight") and "conv" in k for k in changed)
    log = (tmp_path / "log.csv").read_text().splitlines()
    keeps = {float(r.split(",")[3]) for r in log if ",keep_ratio," in r}
    assert keeps <= set(LADDER) and len(log) > 3
    # a continued run (`init_from`) starts from the whole trained model, not from a fresh one
    stages = [{"name": "mce", "steps": 1, "batch_size": 2}]
    more = config_from_dict(tiny(stages, seed=4, init_from=str(tmp_path / CHECKPOINT)))  # seed 4: other fresh init
    again = load_model(train(more, tmp_path / "more")).state_dict()
    assert torch.equal(again["rgb_branch.blocks.0.attn.qkv.weight"], after["rgb_branch.blocks.0.attn.qkv.weight"])
    head = "box_head.conv5_ctr.weight"
    assert (again[head] - after[head]).abs().max() < (again[head] - before[head]).abs().max()


def test_killed_run_resumes_to_identical_weights(tmp_path):
    stages = [
        {"name": "teacher", "steps": 2, "batch_size": 2, "lr_teacher": 1e-3, "lr_head": 1e-3},
        {"name": "ckd", "steps": 6, "batch_size": 2, "lr_backbone": 1e-3, "lr_head": 1e-3},
    ]
    full, cut = tmp_path / "full", tmp_path / "cut"
    cut.mkdir()
    config = write_config(tmp_path, tiny(stages))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ckd.distill", "--config", str(config), "--out", str(cut)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = cut / CHECKPOINT
    deadline = time.time() + 120
    while not ckpt.exists() or torch.load(ckpt, weights_only=False)["global_step"] < 4:
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=False)["global_step"]
    assert 4 <= killed_at < 8
    resumed = load_model(train(load_config(config), cut, resume=True))
    reference = load_model(train(load_config(config), full))
    for k, v in reference.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert (cut / "rank0.sha256").read_text() == (full / "rank0.sha256").read_text()  # teachers too
    steps = [int(r.split(",")[0]) for r in (cut / "log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps) and max(steps) == 8  # rows past the checkpoint were not duplicated


def test_torchrun_two_ranks_hold_identical_weights(tmp_path):
    stages = [{"name": "ckd", "steps": 3, "batch_size": 2, "lr_backbone": 1e-3, "lr_head": 1e-3}]
    config = write_config(tmp_path, tiny(stages, init_students_from_teachers=False))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "ckd.distill"]
    run = subprocess.run(
        cmd + ["--config", str(config), "--out", str(tmp_path / "ddp")], cwd=ROOT, env=env, capture_output=True
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    r0, r1 = ((tmp_path / "ddp" / f"rank{r}.sha256").read_text() for r in (0, 1))
    assert r0 == r1
    ckpt = torch.load(tmp_path / "ddp" / CHECKPOINT, weights_only=False)
    assert ckpt["world"] == 2 and ckpt["sampler"]["position"] == 6  # 3 steps x batch 2 per rank
    # rank 0 alone, same seed: sees only its half of the stream, so the 2-rank weights differ from it
    cfg = load_config(config)
    train(cfg, tmp_path / "one")
    assert (tmp_path / "one" / "rank0.sha256").read_text() != r0


def test_small_student_distills_through_projections():
    student = preset("nano").__class__.from_dict(preset("nano").to_dict() | {"embed_dim": 32, "depth": 2})
    student = student.__class__.from_dict(student.to_dict() | {"ce_loc": [0, 1, 1][:3], "name": "pico"})
    teacher = preset("nano")
    assert layer_map(2, 4) == [1, 3] and layer_map(12, 12) == list(range(12))
    model = DistillModel(student, teacher)
    assert model.proj_rgb[0].weight.shape == (64, 32)
    model.set_stage("ckd")
    g = torch.Generator().manual_seed(0)
    batch = {
        "template_rgb": torch.randn(2, 3, 64, 64, generator=g),
        "template_tir": torch.randn(2, 3, 64, 64, generator=g),
        "search_rgb": torch.randn(2, 3, 128, 128, generator=g),
        "search_tir": torch.randn(2, 3, 128, 128, generator=g),
        "box": torch.tensor([[0.4, 0.4, 0.2, 0.2], [0.3, 0.5, 0.3, 0.2]]),
    }
    losses = model(batch)
    assert torch.isfinite(losses["total"]) and losses["content"] > 0 and losses["style"] > 0
    losses["total"].backward()
    assert model.proj_rgb[1].weight.grad.abs().sum() > 0
    assert model.teacher_rgb.backbone.blocks[0].attn.qkv.weight.grad is not None  # teachers learn online


def test_masked_modeling_hides_the_same_patch_in_both_modalities():
    torch.manual_seed(0)
    model = DistillModel(preset("nano"), preset("nano")).eval()
    g = torch.Generator().manual_seed(1)
    t = torch.randn(1, 3, 64, 64, generator=g)
    s_rgb, s_tir = torch.randn(1, 3, 128, 128, generator=g), torch.randn(1, 3, 128, 128, generator=g)
    mask = torch.zeros(1, 64, dtype=torch.bool)
    mask[0, 9] = True  # patch row 1, column 1: pixels 16..31
    s_rgb2, s_tir2 = s_rgb.clone(), s_tir.clone()
    s_rgb2[..., 16:32, 16:32] = 5.0
    s_tir2[..., 16:32, 16:32] = -5.0
    net = model.student
    a = net(t, t, s_rgb, s_tir, keep_ratio=1.0, search_mask=mask)
    b = net(t, t, s_rgb2, s_tir2, keep_ratio=1.0, search_mask=mask)
    assert torch.equal(a["score_map"], b["score_map"])
    c = net(t, t, s_rgb2, s_tir2, keep_ratio=1.0)
    assert not torch.equal(a["score_map"], c["score_map"])


def _square_clip() -> Clip:
    rgb = np.zeros((240, 320, 3), np.uint8)
    rgb[80:120, 100:140] = 200
    return Clip("square", 3, lambda i: (rgb, rgb[:, :, 0].copy()), gt=np.array([[100.0, 80.0, 40.0, 40.0]] * 3))


def test_sample_without_jitter_centres_the_box_in_the_crop():
    spec = SampleSpec(
        64, 128, augment=Augment(search_center_jitter=0, search_scale_jitter=0, flip_prob=0, grayscale_prob=0)
    )
    s = make_sample([_square_clip()], 5, 0, spec)
    # side = ceil(40 * 4) = 160 -> resize 0.8 -> 32 px of 128 = 0.25; centre (128 - 1) / 2 = 63.5 px
    assert s["box"] == pytest.approx([(63.5 - 16) / 128, (63.5 - 16) / 128, 0.25, 0.25], abs=1e-6)
    assert s["search_rgb"].shape == (3, 128, 128) and s["template_tir"].shape == (3, 64, 64)
    box = box_in_crop(np.array([110.0, 80, 40, 40]), np.array([100.0, 80, 40, 40]), 0.8, 128)
    assert box[0] == pytest.approx((63.5 + 8 - 16) / 128)
    again = make_sample([_square_clip()], 5, 0, spec)
    assert all(np.array_equal(again[k], s[k]) for k in s)


def test_pairs_from_a_dataset_on_disk(tmp_path):
    from ckd.data.synthetic import write_dataset

    write_dataset(tmp_path / "lasher", sequences=1, frames=12, seed=4, width=160, height=120)
    clips = build_clips([{"kind": "lasher", "root": str(tmp_path / "lasher")}])
    assert len(clips) == 1 and len(clips[0]) == 12
    s = make_sample(clips, 0, 0, SampleSpec(64, 128))
    centre = s["box"][:2] + s["box"][2:] / 2
    assert ((centre >= 0) & (centre < 1)).all() and (s["box"][2:] > 0).all()
    assert s["search_tir"].shape == (3, 128, 128)


def test_absence_sampling_is_refused_on_sparse_ground_truth(tmp_path):
    from ckd.data.synthetic import write_dataset
    from ckd.errors import CKDError

    seq = tmp_path / "vtuav" / "animal_001"  # VTUAV: one annotation every 10th frame
    for sub in ("rgb", "ir"):
        (seq / sub).mkdir(parents=True)
        for i in range(21):
            (seq / sub / f"{i:06d}.jpg").touch()
    (seq / "rgb.txt").write_text("11 21 30 40\n0 0 0 0\n14 24 31 41\n")
    write_dataset(tmp_path / "lasher", sequences=2, frames=8, seed=4, width=96, height=72)
    short = sorted((tmp_path / "lasher").iterdir())[1]  # its ground truth stops two frames early
    for name in ("init.txt", "visible.txt", "infrared.txt"):
        (short / name).write_text("".join((short / name).read_text().splitlines(keepends=True)[:-2]))
    vtuav, lasher = {"kind": "vtuav", "root": str(tmp_path / "vtuav")}, {"kind": "lasher", "root": str(short.parent)}
    for source in (vtuav, lasher):
        for aug in (Augment(negative_prob=0.2), Augment(reappear_prob=0.2)):
            with pytest.raises(CKDError, match=r"1 sequence\(s\) are annotated sparsely") as err:
                build_clips([source], aug)
            assert "\n" not in str(err.value)
        assert len(build_clips([source], Augment())) >= 1  # plain positives are fine
    shutil.rmtree(short)  # sequence 0 alone: annotated on every frame
    dense = build_clips([lasher, {"kind": "synthetic", "sequences": 1, "frames": 8}], Augment(negative_prob=0.2))
    assert len(dense) == 2 and not any(c.gt_sparse for c in dense)


def test_negative_samples_never_show_the_target():
    from ckd.data.synthetic import synthetic_clip
    from ckd.distill.data import _negative_search
    from ckd.track.crop import crop_window

    clip = synthetic_clip(2, 60, 320, 240)
    spec = SampleSpec(64, 128, augment=Augment(negative_prob=1.0))
    hidden = 0
    for i in range(40):
        found = _negative_search(clip, 10, (240, 320), np.random.default_rng(i), spec)
        if found is None:
            continue  # the drawn crop would have shown the target
        si, box = found
        x1, y1, side = crop_window(box, spec.search_factor)
        t = clip.gt[si]
        if np.isnan(t).any():
            hidden += 1
            continue
        assert t[0] + t[2] <= x1 or t[0] >= x1 + side or t[1] + t[3] <= y1 or t[1] >= y1 + side, (i, t, box)
    assert hidden > 5  # crops where the target hides (occlusion, out of view) are drawn too
    s = make_sample([clip], 3, 0, SampleSpec(64, 128, augment=Augment(negative_prob=1.0, flip_prob=0)))
    assert s["present"] == 0 and s["search_tir"].shape == (3, 128, 128)
    # the box to keep is the estimate the crop was cut around: centred, a quarter of the crop (search factor 4)
    np.testing.assert_allclose(s["box"][:2] + s["box"][2:] / 2, 63.5 / 128, atol=1e-6)
    assert np.sqrt(np.prod(s["box"][2:])) == pytest.approx(0.25, abs=0.01)
    assert make_sample([clip], 3, 0, SampleSpec(64, 128))["present"] == 1


def test_negatives_train_the_score_map_and_keeping_the_estimate():
    from ckd.distill.losses import gaussian_heatmap, keep_loss, tracking_loss

    g = torch.Generator().manual_seed(0)
    out = {
        "score_map": torch.rand(2, 1, 8, 8, generator=g).clamp(0.01, 0.99),
        "size_map": torch.rand(2, 2, 8, 8, generator=g),
        "offset_map": torch.rand(2, 2, 8, 8, generator=g),
        "pred_boxes": torch.rand(2, 1, 4) * 0.5,
    }
    out["pred_boxes"][:, :, 2:] += 0.2
    box = torch.tensor([[0.4, 0.4, 0.2, 0.2], [0.375, 0.35, 0.25, 0.3]])  # row 1: the estimate to keep
    heat = gaussian_heatmap(box, 8)
    heat[1] = 0
    both = tracking_loss(out, box, heat, present=torch.tensor([True, False]))
    first = tracking_loss({k: v[:1] for k, v in out.items()}, box[:1], heat[:1])
    assert both["giou"] == pytest.approx(float(first["giou"])) and both["l1"] == pytest.approx(float(first["l1"]))
    assert both["focal"] > first["focal"] and both["keep"] > 0  # the negative's score map is pushed down too
    # every cell predicts the kept box exactly: centre (0.5, 0.5) * 8 = 4 cells, so cell k's offset is 4 - k
    size, offset = torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)
    size[0, 0], size[0, 1] = 0.25, 0.3
    offset[0, 0] = 4.0 - torch.arange(8.0)[None, :]
    offset[0, 1] = 4.0 - torch.arange(8.0)[:, None]
    assert keep_loss(size, offset, box[1:]) == 0
    from ckd.model.head import decode_boxes

    for cell in (0, 27, 63):  # whichever cell the tracker picks, the box it decodes is the kept one
        score = torch.zeros(1, 1, 8, 8)
        score.view(-1)[cell] = 1.0
        np.testing.assert_allclose(decode_boxes(score, size, offset)[0].numpy(), [0.5, 0.5, 0.25, 0.3], atol=1e-6)
    offset[0, 0, 3, 3] += 0.5  # one cell half a cell off
    assert keep_loss(size, offset, box[1:]) == pytest.approx(0.5 / 128)  # mean over 8 x 8 cells x (x, y)
    none = tracking_loss(out, box, heat * 0, present=torch.tensor([False, False]))
    assert none["giou"] == 0 and none["l1"] == 0 and none["focal"] > 0 and none["keep"] > 0


def test_relocation_on_image_pairs(tmp_path, capsys):
    import cv2

    from ckd.distill.evaluate import main as evaluate

    rng = np.random.default_rng(0)
    for sub in ("Test_vi", "Test_ir"):
        (tmp_path / sub).mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "Test_vi" / f"{i}.jpg"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        grey = rng.integers(0, 255, (96, 128), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "Test_ir" / f"{i}.jpg"), cv2.merge([grey, grey, grey]))  # LLVIP stores 3 channels
    assert evaluate(["--pairs", str(tmp_path), "--shift", "0.5"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["pairs"] == 2 and scores["moved box"] == {"mean_iou": pytest.approx(1 / 3, abs=1e-4), "iou>=0.5": 0}
    assert 0 <= scores["student"]["mean_iou"] <= 1
    assert evaluate(["--pairs", str(tmp_path / "none")]) == 2


def test_relocation_skips_unusable_pairs_and_counts_them(tmp_path, capsys):
    import cv2

    from ckd.distill.evaluate import main as evaluate

    rng = np.random.default_rng(0)
    for sub in ("Test_vi", "Test_ir"):
        (tmp_path / sub).mkdir()
    sizes = {"good": (96, 128), "cut": (96, 128), "small": (48, 64)}  # thermal height, width
    for name, size in sizes.items():
        cv2.imwrite(str(tmp_path / "Test_vi" / f"{name}.jpg"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "Test_ir" / f"{name}.jpg"), rng.integers(0, 255, size, dtype=np.uint8))
    cut = tmp_path / "Test_ir" / "cut.jpg"
    cut.write_bytes(cut.read_bytes()[:200])  # truncated thermal image
    assert evaluate(["--pairs", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    scores = json.loads(out)
    assert scores["pairs"] == 1 and scores["skipped"] == 2 and 0 <= scores["student"]["mean_iou"] <= 1
    (line,) = [ln for ln in err.splitlines() if ln.startswith("skipped")]
    assert line.startswith("skipped 2 of 3 pairs (first: Test_vi/cut: ") and "truncated" in line
    (tmp_path / "Test_ir" / "good.jpg").unlink()
    assert evaluate(["--pairs", str(tmp_path)]) == 2
    assert "no usable image pair" in capsys.readouterr().err


def test_distractor_crops_hold_the_target_and_its_look_alike():
    from ckd.data.synthetic import synthetic_clips
    from ckd.distill.data import _positive_search
    from ckd.track.crop import crop_window

    clips = synthetic_clips(3, 40, 7, 320, 240)
    with_look_alike = []
    for prob in (0.0, 1.0):
        spec, count = SampleSpec(64, 128, augment=Augment(distractor_prob=prob)), 0
        for clip in clips:
            for i in np.flatnonzero(np.isfinite(clip.gt).all(axis=1)):
                x1, y1, side = crop_window(_positive_search(clip, int(i), np.random.default_rng(i), spec), 4.0)
                lo, hi = np.array([x1, y1]), np.array([x1 + side, y1 + side])
                target = clip.gt[i, :2] + clip.gt[i, 2:] / 2
                assert (target >= lo).all() and (target < hi).all()  # the target is always in the crop
                look_alikes = clip.distractors[:, i, :2] + clip.distractors[:, i, 2:] / 2
                count += bool(((look_alikes >= lo) & (look_alikes < hi)).all(axis=1).any())
        with_look_alike.append(count)
    assert with_look_alike[1] > 1.2 * with_look_alike[0], with_look_alike
    assert clips[0].distractors.shape[1:] == (40, 4)


def test_reappear_crops_meet_the_target_where_it_was_last_seen():
    from ckd.data.synthetic import synthetic_clip
    from ckd.distill.data import _reappear_search
    from ckd.track.tracker import clip_box

    clip = synthetic_clip(2, 60, 320, 240)
    valid = np.isfinite(clip.gt).all(axis=1)
    back = {int(b) for b in np.flatnonzero(valid[1:] & ~valid[:-1]) + 1}
    assert back  # every synthetic sequence hides its target at least once
    spec = SampleSpec(64, 128, augment=Augment(reappear_prob=1.0, search_scale_jitter=0.0))
    for i in range(20):
        si, box = _reappear_search(clip, (240, 320), np.random.default_rng(i), spec)
        start = max(b for b in back if b <= si)
        assert valid[si] and si - start < 6  # one of the first frames after the target came back
        held = clip_box(clip.gt[int(np.flatnonzero(valid[:start])[-1])], 240, 320)
        np.testing.assert_allclose(box[2:], held[2:])  # the size the tracker held (no scale jitter here)
        centre, held_centre = box[:2] + box[2:] / 2, held[:2] + held[2:] / 2
        assert (np.abs(centre - held_centre) <= np.sqrt(np.prod(held[2:])) / 2 + 1e-9).all()
    always = Clip("always", 5, lambda i: None, np.array([1.0, 1, 4, 4]), np.tile([1.0, 1, 4, 4], (5, 1)))
    assert _reappear_search(always, (240, 320), np.random.default_rng(0), spec) is None
    s = make_sample([clip], 3, 0, SampleSpec(64, 128, augment=Augment(reappear_prob=1.0)))
    centre = s["box"][:2] + s["box"][2:] / 2
    assert s["present"] == 1 and ((centre >= 0) & (centre < 1)).all()
    # off (the default), samples are exactly those of a config without the option
    plain, off = SampleSpec(64, 128), SampleSpec(64, 128, augment=Augment(reappear_prob=0.0))
    for k in ("box", "search_rgb", "template_tir"):
        np.testing.assert_array_equal(make_sample([clip], 4, 0, plain)[k], make_sample([clip], 4, 0, off)[k])
