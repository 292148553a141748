"""Tests for tlhelpers.training.freezing: stages, freezing by name and depth, BatchNorm, parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tlhelpers.models.backbones import build_classifier
from tlhelpers.training.engine import train_mode
from tlhelpers.training.freezing import (
    count_parameters,
    freeze,
    freeze_batchnorm,
    stage_names,
    trainable_stages,
    unfreeze,
    unfreeze_last,
)

RESNET_STAGES = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_classifier("mini_resnet", num_classes=5, weights=None).model


def _one_step(model, use_train_mode=True):
    """One SGD step on random data; return the state before it."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_mode(model) if use_train_mode else model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x, y = torch.randn(8, 3, 32, 32) * 3 + 1, torch.randint(0, 5, (8,))
    F.cross_entropy(model(x), y).backward()
    opt.step()
    return before


def test_stage_names_resnet_and_features_families(model):
    assert stage_names(model) == RESNET_STAGES
    with torch.device("meta"):
        assert stage_names(build_classifier("resnet18", 3, weights=None).model) == RESNET_STAGES
        eff = stage_names(build_classifier("efficientnet_b0", 3, weights=None).model)
    assert eff == [f"features.{i}" for i in range(9)] + ["classifier"]


def test_unfreeze_last_two_trains_layer4_and_fc_only(model):
    unfreeze_last(model, 2)
    assert trainable_stages(model) == ["layer4", "fc"]
    before = _one_step(model)
    after = model.state_dict()
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], after[name])
        assert changed == name.startswith(("layer4", "fc")), name
        assert (p.grad is not None) == p.requires_grad, name
    # frozen BatchNorm layers stayed in eval mode: their running statistics did not move
    for name in after:
        if "running_" in name and not name.startswith("layer4"):
            assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["layer4.0.bn1.running_mean"], after["layer4.0.bn1.running_mean"])


def test_plain_train_mode_would_drift_frozen_batchnorm(model):
    # the reason train_mode exists: model.train() updates statistics of a "frozen" backbone
    unfreeze_last(model, 1)
    before = _one_step(model, use_train_mode=False)
    assert not torch.equal(before["bn1.running_mean"], model.bn1.running_mean)


def test_freeze_batchnorm_keeps_all_bn_in_eval(model):
    freeze_batchnorm(model)
    before = _one_step(model)
    assert torch.equal(before["layer2.0.bn2.running_var"], model.layer2[0].bn2.running_var)
    assert model.layer2[0].conv1.weight.requires_grad and not model.bn1.weight.requires_grad


def test_freeze_and_unfreeze_by_name(model):
    freeze(model)
    assert count_parameters(model) == 0
    unfreeze(model, ["layer3", "fc"])
    assert trainable_stages(model) == ["layer3", "fc"]
    freeze(model, "layer3.0.conv1")  # any submodule name works
    assert not model.layer3[0].conv1.weight.requires_grad and model.layer3[0].conv2.weight.requires_grad


def test_count_parameters_matches_manual_count(model):
    unfreeze_last(model, 1)
    assert count_parameters(model) == 128 * 5 + 5
    manual_total = sum(t.numel() for n, t in model.state_dict().items() if "running_" not in n and "num_batches" not in n)
    assert count_parameters(model, trainable_only=False) == manual_total


def test_bad_stage_name_lists_valid_stages(model):
    with pytest.raises(ValueError, match=r"no stage 'layer5'.*layer4, fc"):
        freeze(model, "layer5")
    with pytest.raises(ValueError, match="out of range"):
        unfreeze_last(model, 0)
    with pytest.raises(ValueError, match="out of range"):
        unfreeze_last(model, 8)


def test_stages_of_every_model_type_end_with_its_head():
    from tlhelpers.domain.dann import DANN, DigitNet
    from tlhelpers.models.conv4 import Conv4
    from tlhelpers.models.smallcnn import SmallCNN

    torch.manual_seed(0)
    assert stage_names(SmallCNN(3, width=4)) == ["backbone", "head"]
    assert stage_names(Conv4(num_classes=3, hidden=4)) == ["encoder", "head"]
    dann = DANN(build_classifier("mini_resnet", 3, weights=None).model)
    # the wrapped classifier is split into its own stages; the discriminator comes last
    assert stage_names(dann) == [f"classifier.{s}" for s in RESNET_STAGES] + ["discriminator"]
    unfreeze_last(dann, 3)
    assert trainable_stages(dann) == ["classifier.layer4", "classifier.fc", "discriminator"]
    unfreeze_last(DANN(DigitNet(3, feature_dim=8, width=4)), 2)  # backbone, head, discriminator
