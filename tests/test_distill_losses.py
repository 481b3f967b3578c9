"""Every CKD loss term against answers computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ckd.distill.losses import (
    content_loss,
    focal_loss,
    gaussian_heatmap,
    gaussian_radius,
    giou_loss,
    random_search_mask,
    style_loss,
    tracking_loss,
)


def test_style_loss_channel_statistics_by_hand():
    # x: tokens 1, 3 -> mean 2, unbiased std sqrt(2); y: tokens 0, 0 -> mean 0, std 0. (2-0)^2 + (sqrt2-0)^2 = 6.
    x = torch.tensor([[[1.0], [3.0]]], requires_grad=True)
    y = torch.tensor([[[0.0], [0.0]]], requires_grad=True)
    loss = style_loss(x, y)
    assert loss.item() == pytest.approx(6.0)
    loss.backward()
    assert x.grad is not None and y.grad is not None  # gradient flows into both students
    # d/dx1 of (mean-0)^2 + (std)^2 = 2*2*0.5 + d(var)/dx1 = 2 + (x1-mean)*2/(n-1) = 2 - 2 = 0; x3: 2 + 2 = 4
    assert x.grad.flatten().tolist() == pytest.approx([0.0, 4.0])


def test_style_loss_token_variant_and_mean_over_channels():
    x = torch.tensor([[[1.0, 3.0]]])  # one token, two channels: mean 2, std sqrt2
    assert style_loss(x, torch.zeros(1, 1, 2), variant="token").item() == pytest.approx(6.0)
    # two channels: channel 0 differs by a constant 1 (means), channel 1 identical -> mean(1, 0) = 0.5
    a = torch.tensor([[[1.0, 5.0], [2.0, 7.0]]])
    b = torch.tensor([[[0.0, 5.0], [1.0, 7.0]]])
    assert style_loss(a, b).item() == pytest.approx(0.5)


def test_content_loss_is_instance_normalised_mse_with_teacher_detached():
    # teacher tokens 1, 3 -> IN -> -1, +1; student tokens 5, 1 -> +1, -1; MSE = (4 + 4) / 2 = 4 (eps 1e-5 on var 1)
    teacher = torch.tensor([[[1.0], [3.0]]], requires_grad=True)
    student = torch.tensor([[[5.0], [1.0]]], requires_grad=True)
    loss = content_loss(teacher, student)
    assert loss.item() == pytest.approx(4.0 / (1 + 1e-5), rel=1e-5)  # float32 rsqrt
    loss.backward()
    assert teacher.grad is None and student.grad is not None
    # content ignores exactly what the style loss aligns: per-channel affine changes of the student cost nothing
    t = torch.randn(2, 20, 8)
    assert content_loss(t, t * 7.0 + 3.0).item() == pytest.approx(0.0, abs=1e-8)


def test_focal_loss_by_hand():
    pred = torch.tensor([0.5, 0.2]).view(1, 1, 1, 2)
    target = torch.tensor([1.0, 0.5]).view(1, 1, 1, 2)
    # pos: log(.5) * .5^2 = -0.1732868; neg: log(.8) * .2^2 * (1-.5)^4 = -0.000557859; / 1 positive
    expected = -(math.log(0.5) * 0.25 + math.log(0.8) * 0.04 * 0.0625)
    assert focal_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.1738446, rel=1e-6)
    # no positive cell: minus the negative sum, not divided
    target0 = torch.tensor([0.5, 0.0]).view(1, 1, 1, 2)
    expected0 = -(math.log(0.5) * 0.25 * 0.0625 + math.log(0.8) * 0.04)
    assert focal_loss(pred, target0).item() == pytest.approx(expected0, rel=1e-6)


def test_giou_loss_by_hand():
    # [0,0,2,2] vs [1,1,3,3]: inter 1, union 7, enclosing 9 -> giou = 1/7 - 2/9; loss = 1 - giou
    loss, iou = giou_loss(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
    assert iou.item() == pytest.approx(1 / 7)
    assert loss.item() == pytest.approx(1 - (1 / 7 - 2 / 9))


def test_tracking_loss_weights_giou2_l1_5_focal1():
    heat = torch.zeros(1, 1, 2, 2)
    heat[0, 0, 0, 0] = 1.0
    score = torch.tensor([[[[0.5, 0.1], [0.1, 0.1]]]])
    out = {"pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2]]]), "score_map": score}  # xyxy .4 .4 .6 .6
    gt = torch.tensor([[0.5, 0.4, 0.2, 0.2]])  # xyxy .5 .4 .7 .6: iou 1/3, enclosing = union -> giou 1/3
    parts = tracking_loss(out, gt, heat)
    assert parts["giou"].item() == pytest.approx(2 / 3)
    assert parts["l1"].item() == pytest.approx(0.05)
    focal = -(math.log(0.5) * 0.25 + 3 * math.log(0.9) * 0.01)
    assert parts["focal"].item() == pytest.approx(focal, rel=1e-6)
    assert parts["total"].item() == pytest.approx(2 * 2 / 3 + 5 * 0.05 + focal, rel=1e-6)


def test_gaussian_radius_and_heatmap_by_hand():
    # 8x8 cells, min overlap 0.7: r3 = (-22.4 + sqrt(22.4^2 + 4*2.8*19.2)) / 2 = 2.1865 is the smallest
    r = gaussian_radius(torch.tensor([8.0]), torch.tensor([8.0]))
    assert r.item() == pytest.approx((-22.4 + math.sqrt(22.4**2 + 4 * 2.8 * 19.2)) / 2, rel=1e-5)
    # box 0.25..0.75 on a 16 grid: centre cell (8, 8), radius 2, sigma 5/6
    hm = gaussian_heatmap(torch.tensor([[0.25, 0.25, 0.5, 0.5]]), 16)[0, 0]
    assert hm[8, 8].item() == 1.0 and int((hm == 1).sum()) == 1
    assert hm[8, 9].item() == pytest.approx(math.exp(-0.72), rel=1e-5)  # 1 / (2 * 25/36) = 0.72
    assert hm[10, 10].item() == pytest.approx(math.exp(-8 * 0.72), rel=1e-5)
    assert hm[8, 11].item() == 0.0 and int((hm > 0).sum()) == 25
    # a 2x2-cell box: radius 0 -> a single positive cell at round(centre)
    hm = gaussian_heatmap(torch.tensor([[0.4375, 0.5, 0.125, 0.125]]), 16)[0, 0]
    assert int((hm > 0).sum()) == 1 and hm[9, 8].item() == 1.0


def test_random_search_mask_rate_and_determinism():
    assert not random_search_mask(4, 16, 0.0).any()
    m = random_search_mask(200, 1000, 0.25, torch.Generator().manual_seed(3))
    assert abs(m.float().mean().item() - 0.25) < 0.005
    assert torch.equal(m, random_search_mask(200, 1000, 0.25, torch.Generator().manual_seed(3)))
