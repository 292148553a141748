"""Tests for tlhelpers.models.backbones: building by name, head replacement, features, offline weights."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from tlhelpers.models import backbones
from tlhelpers.models.backbones import (
    WeightsUnavailableError,
    build_classifier,
    cached_weights_path,
    features,
    get_head,
    head_name,
    load_backbone_state,
    replace_head,
    resolve_weights,
)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, and a download function that fails the test if it is ever called."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(url, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path


def test_resolve_weights_default_is_imagenet_v2():
    enum = resolve_weights("resnet50", "DEFAULT")
    assert enum is torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    assert resolve_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V1").name == "IMAGENET1K_V1"
    assert resolve_weights("resnet50", None) is None


def test_cached_path_follows_torch_home(torch_home):
    enum = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert cached_weights_path(enum) == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"


def test_weights_load_offline_from_hub_cache(torch_home):
    # torch.hub verifies the file-name hash only when it downloads; a file already in the cache is
    # read as is, so a state dict saved under the expected name exercises torchvision's real path.
    torch.manual_seed(1)
    reference = torchvision.models.resnet18().state_dict()
    path = cached_weights_path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save(reference, path)

    built = build_classifier("resnet18", num_classes=5, weights="DEFAULT", reduced=False)

    assert built.weights_loaded
    state = built.model.state_dict()
    body = [k for k in reference if not k.startswith("fc.")]
    assert all(torch.equal(state[k], reference[k]) for k in body)
    assert built.model.fc.out_features == 5 and built.model.fc.in_features == 512
    assert built.transforms.crop_size == [224]


def test_reduced_mode_falls_back_with_banner(torch_home):
    with pytest.warns(UserWarning, match="RANDOM"):
        built = build_classifier("resnet18", num_classes=3, weights="DEFAULT", reduced=True)
    assert not built.weights_loaded
    assert built.model.fc.out_features == 3


def test_full_mode_download_failure_is_clear(torch_home, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError, match="resnet18-f37072fd.pth"):
        build_classifier("resnet18", num_classes=3, weights="DEFAULT", reduced=False)


@pytest.mark.parametrize(
    ("arch", "head"),
    [
        ("resnet18", "fc"), ("vgg11", "classifier.6"), ("efficientnet_b0", "classifier.1"),
        ("mobilenet_v2", "classifier.1"), ("mobilenet_v3_small", "classifier.3"),
        ("convnext_tiny", "classifier.2"), ("densenet121", "classifier"), ("mini_resnet", "fc"),
        ("mini_vgg", "classifier.6"),
    ],
)
def test_head_replaced_for_each_family(arch, head):
    with torch.device("meta"):  # no memory, no init cost: only the structure is checked
        model = build_classifier(arch, num_classes=7, weights=None).model
    assert head_name(model) == head
    assert isinstance(get_head(model), nn.Linear) and get_head(model).out_features == 7
    assert model(torch.empty(2, 3, 64, 64, device="meta")).shape == (2, 7)


def test_features_match_manual_forward_and_feed_the_head():
    torch.manual_seed(0)
    model = build_classifier("mini_resnet", num_classes=4, weights=None).model.eval()
    x = torch.randn(3, 3, 32, 32)
    body = nn.Sequential(*[m for name, m in model.named_children() if name != "fc"], nn.Flatten())
    with torch.no_grad():
        feats = features(model, x)
        assert feats.shape == (3, 128)
        torch.testing.assert_close(feats, body(x))
        torch.testing.assert_close(model.fc(feats), model(x))


def test_replace_head_is_fresh_and_trainable():
    model = build_classifier("mini_resnet", num_classes=4, weights=None).model
    for p in model.parameters():
        p.requires_grad_(False)
    new = replace_head(model, 9)
    assert model.fc is new and new.out_features == 9 and all(p.requires_grad for p in new.parameters())


def test_load_backbone_state_skips_head_and_rejects_other_arch():
    torch.manual_seed(0)
    source = build_classifier("mini_resnet", num_classes=10, weights=None).model
    target = build_classifier("mini_resnet", num_classes=3, weights=None).model
    head_before = target.fc.weight.clone()
    load_backbone_state(target, source.state_dict())
    assert torch.equal(target.layer4[0].conv1.weight, source.layer4[0].conv1.weight)
    assert torch.equal(target.bn1.running_var, source.bn1.running_var)
    assert torch.equal(target.fc.weight, head_before)
    with pytest.raises(ValueError, match="same architecture"):
        load_backbone_state(target, torchvision.models.resnet18().state_dict())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "resnet51"}, "unknown architecture 'resnet51'.*resnet50"),
        ({"arch": "resnet18", "num_classes": 1}, "at least 2"),
        ({"arch": "resnet18", "weights": "IMAGENET9K"}, "unknown weights.*IMAGENET1K_V1"),
        ({"arch": "mini_resnet", "weights": "DEFAULT"}, "no pretrained weights"),
        ({"arch": "mini_vgg", "weights": "DEFAULT"}, "no pretrained weights"),
    ],
)
def test_bad_input(kwargs, match):
    kwargs.setdefault("num_classes", 3)
    with pytest.raises(ValueError, match=match):
        build_classifier(**kwargs)


def test_replace_head_rejects_one_class():
    with pytest.raises(ValueError, match="at least 2"):
        replace_head(backbones.build_classifier("mini_resnet", 3, weights=None).model, 1)


def test_googlenet_with_pretrained_aux_heads_fine_tunes_with_fit(torch_home):
    from torch.utils.data import DataLoader

    from tlhelpers.training.engine import fit

    torch.manual_seed(0)
    # a "pretrained" file as torchvision ships it: 1000 classes and the two auxiliary heads' weights
    reference = torchvision.models.googlenet(aux_logits=True, init_weights=True).state_dict()
    assert any(k.startswith("aux1.") for k in reference)
    path = cached_weights_path(torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save(reference, path)
    built = build_classifier("googlenet", num_classes=2, weights="DEFAULT", reduced=False)
    model = built.model
    assert built.weights_loaded and model.aux1 is None and model.aux2 is None and not model.aux_logits
    assert torch.equal(model.conv1.conv.weight, reference["conv1.conv.weight"])
    assert not any(k.startswith("aux") for k in model.state_dict())
    load_backbone_state(model, reference)  # the aux weights of a full state dict are skipped, not an error
    x = torch.rand(4, 3, 32, 32)
    assert torch.is_tensor(model.train()(x)) and model(x).shape == (4, 2)  # train mode: plain logits
    loader = DataLoader(list(zip(x, torch.tensor([0, 1, 0, 1]))), batch_size=4)
    history = fit(model, loader, 1, device="cpu", progress=False)
    assert history["train_loss"][0] > 0 and model.forward_features(x).shape == (4, 1024)


def test_inception_v3_from_scratch_has_no_aux_head():
    with torch.device("meta"):
        model = build_classifier("inception_v3", num_classes=3, weights=None).model
    assert model.AuxLogits is None and not model.aux_logits and get_head(model).out_features == 3
