"""Tests for tlhelpers.training.param_groups: multipliers, no-decay parameters, use with any optimizer."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from tlhelpers.models.backbones import build_classifier
from tlhelpers.training.freezing import unfreeze_last
from tlhelpers.training.param_groups import discriminative_groups, layerwise_groups, param_groups
from tlhelpers.training.schedules import warmup_cosine


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_classifier("mini_resnet", num_classes=4, weights=None).model


def _lr_of(groups, model):
    """Map every parameter name to its group's (lr, weight_decay)."""
    by_id = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {n: by_id.get(id(p)) for n, p in model.named_parameters()}


def test_every_trainable_parameter_in_exactly_one_group(model):
    unfreeze_last(model, 3)
    groups = param_groups(model, lr=1.0)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}


def test_discriminative_lrs_and_no_decay(model):
    lrs = _lr_of(discriminative_groups(model, lr=1e-2, backbone_mult=0.1, weight_decay=0.05), model)
    assert lrs["fc.weight"] == (1e-2, 0.05)
    assert lrs["fc.bias"] == (1e-2, 0.0)
    assert lrs["layer1.0.conv1.weight"] == pytest.approx((1e-3, 0.05))
    assert lrs["bn1.weight"] == pytest.approx((1e-3, 0.0))


def test_longest_name_wins_and_default_applies(model):
    lrs = _lr_of(param_groups(model, 1.0, {"layer4": 0.5, "layer4.0.conv2": 0.25}, default=0.0), model)
    assert lrs["layer4.0.conv1.weight"][0] == 0.5
    assert lrs["layer4.0.conv2.weight"][0] == 0.25
    assert lrs["layer2.0.conv1.weight"][0] == 0.0


def test_layerwise_decay_per_stage(model):
    lrs = _lr_of(layerwise_groups(model, lr=1.0, decay=0.5), model)
    expected = {"fc": 1.0, "layer4": 0.5, "layer3": 0.25, "layer2": 0.125, "layer1": 0.0625, "bn1": 2**-5, "conv1": 2**-6}
    for stage, lr in expected.items():
        assert all(v[0] == pytest.approx(lr) for n, v in lrs.items() if n.startswith(stage + ".")), stage


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW])
def test_groups_work_with_any_optimizer_and_schedule_keeps_ratio(model, optimizer):
    opt = optimizer(discriminative_groups(model, lr=1e-2, backbone_mult=0.1))
    sched = functools.partial(warmup_cosine, warmup_steps=2)(opt, 10)
    for _ in range(4):
        F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    head, body = (g for g in sorted(opt.param_groups, key=lambda g: -g["lr_mult"]) if g["name"] in ("fc", "default"))
    assert head["lr"] == pytest.approx(10 * body["lr"]) and 0 < head["lr"] < 1e-2


def test_frozen_parameters_left_out(model):
    unfreeze_last(model, 1)
    groups = param_groups(model, lr=1.0)
    assert sum(p.numel() for g in groups for p in g["params"]) == 128 * 4 + 4


def test_bad_input(model):
    with pytest.raises(ValueError, match=r"no stage 'layer9'.*valid stages: conv1"):
        param_groups(model, 1.0, {"layer9": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        param_groups(model, 1.0, {"fc": -1.0})
    with pytest.raises(ValueError, match="decay"):
        layerwise_groups(model, 1.0, decay=1.5)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        param_groups(model, 1.0)


def test_discriminative_head_is_the_classifiers_head_for_any_model():
    from tlhelpers.domain.dann import DANN, DigitNet
    from tlhelpers.models.smallcnn import SmallCNN

    torch.manual_seed(0)
    dann = DANN(DigitNet(3, feature_dim=8, width=4))
    lrs = _lr_of(discriminative_groups(dann, lr=1.0, backbone_mult=0.1), dann)
    # the class head learns at lr; not the discriminator's last Linear (the last nn.Linear of the model)
    assert lrs["classifier.head.1.weight"] == (1.0, 0.0) and lrs["discriminator.net.4.weight"] == (0.1, 0.0)
    assert lrs["classifier.backbone.0.weight"] == (0.1, 0.0)
    small = SmallCNN(3, width=4)
    assert _lr_of(discriminative_groups(small, lr=1.0, backbone_mult=0.5), small)["head.weight"] == (1.0, 0.0)
