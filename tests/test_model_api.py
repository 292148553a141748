"""Tests for tlhelpers.models.api: one interface (forward_features, forward_head, num_features,
reset_classifier) on every model the package builds or wraps."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torchvision
from torch import nn

from tlhelpers.domain.dann import DANN, DigitNet
from tlhelpers.models import api as model_api
from tlhelpers.models.backbones import build_classifier
from tlhelpers.models.conv4 import Conv4
from tlhelpers.models.mini_resnet import MiniResNet
from tlhelpers.models.mini_vgg import MiniVGG
from tlhelpers.models.smallcnn import SmallCNN


def _models():
    """(name, model, input, expected num_features): tiny versions of each kind."""
    torch.manual_seed(0)
    x3 = torch.rand(3, 3, 32, 32)
    return [
        ("smallcnn", SmallCNN(5, width=4), x3, 16),
        ("mini_resnet", MiniResNet(5, widths=(4, 4, 8, 8)), x3, 8),
        ("mini_vgg", MiniVGG(5, widths=(4, 4, 8, 8, 8), hidden=12), x3, 12),
        ("digitnet", DigitNet(5, feature_dim=10, width=4), x3, 10),
        ("conv4", Conv4(in_channels=3, hidden=4, num_classes=5, image_size=32), x3, 4 * 2 * 2),
        ("dann", DANN(DigitNet(5, feature_dim=10, width=4)), x3, 10),
        ("resnet18", build_classifier("resnet18", 5, weights=None).model, x3, 512),
        ("mobilenet_v3_small", build_classifier("mobilenet_v3_small", 5, weights=None).model, x3, 1024),
        ("torchvision resnet18, not built here", torchvision.models.resnet18(num_classes=5), x3, 512),
    ]


MODELS = _models()


@pytest.mark.parametrize(("name", "model", "x", "dim"), MODELS, ids=[m[0] for m in MODELS])
def test_interface_on_every_model_type(name, model, x, dim):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        feats = model_api.forward_features(model, x)
        assert feats.shape == (len(x), dim) and model_api.num_features(model) == dim
        # the head's input is the features: head(features) is the model's output
        torch.testing.assert_close(model_api.forward_head(model, feats), logits)
        assert logits.shape == (len(x), 5)
        head = model_api.reset_classifier(model, 3)
        assert model_api.get_head(model) is head
        assert model(x).shape == (len(x), 3)  # a new head with 3 outputs ...
        torch.testing.assert_close(model_api.forward_features(model, x), feats)  # ... on the same features
    if name.startswith("torchvision"):
        return
    # the methods themselves, not only the generic functions
    assert model.num_features == dim and isinstance(model.num_features, int)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), feats)
        assert model.forward_head(feats).shape == (len(x), 3)
        model.reset_classifier(4)
        assert model(x).shape == (len(x), 4)


def test_built_torchvision_model_keeps_its_keys_attributes_and_pickles():
    built = build_classifier("resnet18", 4, weights=None).model
    plain = torchvision.models.resnet18(num_classes=4)
    assert isinstance(built, torchvision.models.ResNet) and type(built).__name__ == "ResNet"
    # the class name fit's checkpoints record (module.qualname) is torchvision's, as before
    assert (type(built).__module__, type(built).__qualname__) == ("torchvision.models.resnet", "ResNet")
    assert isinstance(built.fc, nn.Linear) and built.fc is model_api.get_head(built)
    assert list(built.state_dict()) == list(plain.state_dict())
    built.load_state_dict(plain.state_dict())  # a plain torchvision state dict (e.g. pretrained) loads strictly
    x = torch.rand(2, 3, 32, 32)
    built.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(built(x), plain(x))
        stem = plain.maxpool(plain.relu(plain.bn1(plain.conv1(x))))
        pooled = plain.avgpool(plain.layer4(plain.layer3(plain.layer2(plain.layer1(stem))))).flatten(1)
        torch.testing.assert_close(built.forward_features(x), pooled)
    for clone in (copy.deepcopy(built), _pickle_roundtrip(built)):
        assert type(clone) is type(built) and clone.num_features == 512
        with torch.no_grad():
            torch.testing.assert_close(clone.eval()(x), built(x))


def _pickle_roundtrip(model):
    buffer = io.BytesIO()
    torch.save(model, buffer)  # whole-model save pickles the class
    buffer.seek(0)
    return pickle.loads(pickle.dumps(torch.load(buffer, weights_only=False)))


def test_attach_interface_leaves_models_with_methods_alone():
    model = SmallCNN(3, width=4)
    assert model_api.attach_interface(model) is model and type(model) is SmallCNN
    assert model_api.has_interface(model) and model_api.has_interface(torchvision.models.resnet18())
    assert not model_api.has_interface(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))


def test_model_without_interface_gets_one_line_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    for call in (
        lambda: model_api.forward_features(model, torch.rand(1, 3, 8, 8)),
        lambda: model_api.num_features(model),
        lambda: model_api.reset_classifier(model, 3),
        lambda: model_api.attach_interface(model),
    ):
        with pytest.raises(ValueError, match="no forward_features/forward_head and no nn.Linear head") as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="at least 2 classes"):
        model_api.reset_classifier(SmallCNN(3, width=4), 1)


def test_head_name_follows_get_classifier():
    dann = DANN(build_classifier("mini_resnet", 3, weights=None).model)
    # the classification head, not the discriminator's last Linear (which is registered later)
    assert model_api.head_name(dann) == "classifier.fc"
    assert model_api.head_name(DigitNet(4)) == "head.1"
    assert model_api.head_name(Conv4(num_classes=4)) == "head"


def test_conv4_keeps_feature_dim_and_shares_count_parameters():
    from tlhelpers.models import conv4
    from tlhelpers.training import freezing

    model = Conv4(in_channels=1, hidden=8, image_size=28)
    assert model.feature_dim == model.num_features == 8
    assert conv4.count_parameters is freezing.count_parameters
