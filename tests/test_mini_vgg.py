"""Tests for tlhelpers.models.mini_vgg: VGG16's layout and layer names at CPU size."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader

from tlhelpers.models.backbones import (
    build_classifier,
    head_name,
    load_backbone_state,
    replace_head,
)
from tlhelpers.models.mini_vgg import MiniVGG, StandardizedWeight, mini_vgg, vgg_features
from tlhelpers.transfer.features import extract_features, valid_layers, vgg_aliases


def module_types(seq: nn.Sequential) -> list[type]:
    return [parametrize.type_before_parametrizations(m) for m in seq]


def test_same_module_types_at_the_same_indices_as_vgg16():
    with torch.device("meta"):  # structure only: no 138 M weights to initialise
        vgg = torchvision.models.vgg16()
    model = mini_vgg(10)
    assert module_types(model.features) == module_types(vgg.features)
    assert module_types(model.classifier) == module_types(vgg.classifier)
    assert vgg_aliases(model) == vgg_aliases(vgg)


def test_named_layers_are_the_modules_the_vgg_paper_names():
    model = mini_vgg(10)
    aliases = vgg_aliases(model)
    for alias, convs_before in {"conv3_3": 7, "conv4_3": 10, "conv5_3": 13}.items():
        index = int(aliases[alias].split(".")[1])
        assert isinstance(model.features[index], nn.ReLU)
        assert isinstance(model.features[index - 1], nn.Conv2d)  # the ReLU right after that conv
        assert sum(isinstance(m, nn.Conv2d) for m in model.features[:index]) == convs_before
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    assert [aliases[f"pool{b}"] for b in range(1, 6)] == [f"features.{i}" for i in pools]
    assert (aliases["fc6"], aliases["fc7"], aliases["logits"]) == ("classifier.1", "classifier.4", "classifier.6")
    assert isinstance(model.classifier[1], nn.ReLU) and isinstance(model.classifier[4], nn.ReLU)


def test_extracted_layers_match_a_manual_forward():
    torch.manual_seed(0)
    model = mini_vgg(10, widths=(4, 8, 8, 16, 16), hidden=12).eval()
    x = torch.randn(3, 3, 32, 32)
    layers = ["conv4_3", "conv5_3", "pool5", "fc6", "fc7"]
    assert set(layers) <= set(valid_layers(model))
    feats, _ = extract_features(model, layers, DataLoader([(x[i], 0) for i in range(3)], batch_size=3), progress=False)
    with torch.no_grad():
        conv4_3 = model.features[:23](x)
        conv5_3 = model.features[:30](x)
        pooled = model.avgpool(model.features(x)).flatten(1)
        fc6 = torch.relu(model.classifier[0](pooled))
        fc7 = torch.relu(model.classifier[3](fc6))
    expected = {"conv4_3": conv4_3.mean(dim=(2, 3)), "conv5_3": conv5_3.mean(dim=(2, 3)),
                "pool5": pooled, "fc6": fc6, "fc7": fc7}
    for layer in layers:
        torch.testing.assert_close(feats[layer], expected[layer])
    assert {k: v.shape[1] for k, v in feats.items()} == {"conv4_3": 16, "conv5_3": 16, "pool5": 16, "fc6": 12, "fc7": 12}


def test_standardized_weights_match_an_explicit_formula():
    torch.manual_seed(0)
    model = MiniVGG(10)
    conv = model.features[2]
    raw = conv.parametrizations.weight.original
    per_filter = raw.flatten(1)
    expected = (per_filter - per_filter.mean(1, keepdim=True)) / (per_filter.std(1, unbiased=False, keepdim=True)
                                                                  * per_filter.shape[1] ** 0.5)
    expected = expected * (2 / (1 - 1 / torch.pi)) ** 0.5
    torch.testing.assert_close(conv.weight.flatten(1), expected, rtol=1e-3, atol=1e-5)
    assert isinstance(conv, nn.Conv2d) and isinstance(conv.parametrizations.weight[0], StandardizedWeight)
    plain = MiniVGG(10, standardize=False)
    assert not parametrize.is_parametrized(plain.features[2])
    assert [type(m) for m in plain.features] == module_types(model.features)


@pytest.mark.parametrize("size, pooled_side", [(32, 1), (64, 2)])
def test_shapes(size, pooled_side):
    model = MiniVGG(7).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert model.features(x).shape == (2, 128, pooled_side, pooled_side)
        assert model(x).shape == (2, 7)
    assert MiniVGG(7, pool_size=2).classifier[0].in_features == 128 * 4


def test_built_by_name_with_a_replaceable_head():
    built = build_classifier("mini_vgg", num_classes=4, weights=None)
    model = built.model
    assert head_name(model) == "classifier.6" and model.classifier[6].out_features == 4
    new = replace_head(model, 3)
    assert model.classifier[6] is new and new.out_features == 3 and new.weight.requires_grad
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_backbone_state_moves_between_heads():
    torch.manual_seed(0)
    source = build_classifier("mini_vgg", num_classes=10, weights=None).model
    target = build_classifier("mini_vgg", num_classes=3, weights=None).model
    load_backbone_state(target, source.state_dict())
    assert torch.equal(target.features[28].weight, source.features[28].weight)
    assert torch.equal(target.classifier[3].weight, source.classifier[3].weight)  # fc7 is backbone, not head
    assert target.classifier[6].out_features == 3


def test_bad_widths():
    with pytest.raises(ValueError, match="5 block widths"):
        MiniVGG(10, widths=(16, 32, 64))
    with pytest.raises(ValueError, match="one width per block"):
        vgg_features((8, 8), blocks=(2, 2, 3))


def test_forward_features_is_what_the_head_sees_fc7():
    torch.manual_seed(0)
    model = mini_vgg(4, widths=(4, 8, 8, 16, 16), hidden=12).eval()  # dropout 0: fc7 is the head's input
    x = torch.randn(3, 3, 32, 32)
    fc7, _ = extract_features(model, "fc7", DataLoader([(x[i], 0) for i in range(3)], batch_size=3), progress=False)
    with torch.no_grad():
        feats = model.forward_features(x)
        torch.testing.assert_close(feats, fc7)
        torch.testing.assert_close(model.forward_head(feats), model(x))
    assert model.num_features == 12 and model.reset_classifier(6) is model.classifier[6]
    assert head_name(model) == "classifier.6" and model(x).shape == (3, 6)
