from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

import tlhelpers.transfer.features as features_mod
from tlhelpers.data.tensor_dataset import ImageTensorDataset
from tlhelpers.transfer.features import (
    LayerNotFoundError,
    extract_features,
    valid_layers,
    vgg_aliases,
)


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(),
    )


@pytest.fixture
def dataset() -> ImageTensorDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=gen)
    return ImageTensorDataset(images, torch.arange(10) % 3, ["a", "b", "c"])


def loader(ds, shuffle=False):
    return DataLoader(ds, batch_size=4, shuffle=shuffle)


def reference(model, ds, upto):
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        return model[:upto](x).mean(dim=(2, 3))


def test_matches_direct_forward_and_is_deterministic(dataset):
    model = tiny_model()
    f1, y1 = extract_features(model, "1", loader(dataset), progress=False)
    f2, _ = extract_features(model, "1", loader(dataset), progress=False)
    assert f1.shape == (10, 4) and torch.equal(y1, dataset.labels)
    torch.testing.assert_close(f1, reference(model, dataset, 2))
    assert torch.equal(f1, f2)


def test_several_layers_in_one_pass(dataset):
    model = tiny_model()
    feats, labels = extract_features(model, ["1", "3"], loader(dataset), progress=False)
    assert set(feats) == {"1", "3"} and feats["3"].shape == (10, 6)
    torch.testing.assert_close(feats["3"], reference(model, dataset, 4))
    flat, _ = extract_features(model, "3", loader(dataset), progress=False, pool=False)
    assert flat.shape == (10, 6 * 3 * 3)


def test_cache_hit_skips_the_model(dataset, tmp_path, monkeypatch):
    model = tiny_model()
    first, _ = extract_features(model, "3", loader(dataset), cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("the model ran on a cache hit")

    monkeypatch.setattr(features_mod, "create_feature_extractor", boom)
    second, labels = extract_features(model, "3", loader(dataset), cache_dir=tmp_path, progress=False)
    assert torch.equal(first, second) and torch.equal(labels, dataset.labels)


@pytest.mark.parametrize("change", ["weights", "transform", "data", "layer", "pool"])
def test_cache_miss_when_the_key_changes(dataset, tmp_path, change):
    model = tiny_model()
    extract_features(model, "3", loader(dataset), cache_dir=tmp_path, progress=False)
    kwargs = {"model": model, "layer": "3", "ds": dataset, "pool": True}
    if change == "weights":
        kwargs["model"] = tiny_model(seed=1)
    elif change == "transform":
        kwargs["ds"] = dataset.with_transform(v2.ToDtype(torch.float32, scale=True))
    elif change == "data":
        images = dataset.images.clone()
        images[0, 0, 0, 0] ^= 1
        kwargs["ds"] = ImageTensorDataset(images, dataset.labels, dataset.classes)
    elif change == "layer":
        kwargs["layer"] = "2"
    else:
        kwargs["pool"] = False
    feats, _ = extract_features(kwargs["model"], kwargs["layer"], loader(kwargs["ds"]), cache_dir=tmp_path, progress=False, pool=kwargs["pool"])
    assert len(list(tmp_path.glob("*.pt"))) == 2
    if change == "weights":
        torch.testing.assert_close(feats, reference(kwargs["model"], dataset, 4))


def test_foreign_cache_file_is_recomputed_not_reused(dataset, tmp_path):
    model = tiny_model()
    good, _ = extract_features(model, "3", loader(dataset), cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("*.pt")
    blob = torch.load(path, weights_only=True)
    blob["key"] = {**blob["key"], "model": "someothernet"}
    blob["features"] = torch.zeros_like(blob["features"])
    torch.save(blob, path)
    with pytest.warns(UserWarning, match="another model"):
        again, _ = extract_features(model, "3", loader(dataset), cache_dir=tmp_path, progress=False)
    assert torch.equal(again, good)


def test_interrupted_write_leaves_no_cache_and_truncated_file_is_recomputed(dataset, tmp_path, monkeypatch):
    model = tiny_model()
    real_save = torch.save

    def interrupted(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_features(model, "3", loader(dataset), cache_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither a final file nor a temp file is left
    monkeypatch.setattr(torch, "save", real_save)

    good, _ = extract_features(model, "3", loader(dataset), cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(path.read_bytes()[:100])  # e.g. a copy cut short
    with pytest.warns(UserWarning, match="unreadable"):
        again, _ = extract_features(model, "3", loader(dataset), cache_dir=tmp_path, progress=False)
    assert torch.equal(again, good)


def test_shuffling_loader_warns_and_keeps_dataset_order(dataset):
    model = tiny_model()
    ordered, _ = extract_features(model, "3", loader(dataset), progress=False)
    with pytest.warns(UserWarning, match="shuffles"):
        feats, labels = extract_features(model, "3", loader(dataset, shuffle=True), progress=False)
    assert torch.equal(feats, ordered) and torch.equal(labels, dataset.labels)


def test_unknown_layer_lists_valid_names(dataset):
    with pytest.raises(LayerNotFoundError, match="valid|use one of") as err:
        extract_features(tiny_model(), "conv9_9", loader(dataset), progress=False)
    assert "'conv9_9'" in str(err.value) and "3" in str(err.value)
    with pytest.raises(ValueError, match="empty"):
        extract_features(tiny_model(), [], loader(dataset), progress=False)


def two_images():
    x = torch.rand(2, 3, 32, 32)
    return x, DataLoader([(x[i], 0) for i in range(2)], batch_size=2)


def test_vgg16_aliases_give_expected_shapes():
    x, batches = two_images()
    vgg = torchvision.models.vgg16()
    assert {"conv4_3", "conv5_3", "fc7"} <= set(valid_layers(vgg))
    feats, _ = extract_features(vgg, ["conv4_3", "conv5_3", "fc7"], batches, progress=False)
    assert {k: v.shape[1] for k, v in feats.items()} == {"conv4_3": 512, "conv5_3": 512, "fc7": 4096}
    with torch.no_grad():
        expected = vgg.eval().features[:30](x).mean(dim=(2, 3))
    torch.testing.assert_close(feats["conv5_3"], expected)


# Graph nodes of the named layers, counted by hand from the VGG paper's configurations D (vgg16) and
# E (vgg19): each conv is followed by its ReLU (and, in vgg16_bn, a BatchNorm before it), each block
# by a max-pool; the classifier is Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
VGG_NODES = {
    "vgg16": {"conv1_1": "features.1", "conv3_3": "features.15", "pool3": "features.16", "conv4_3": "features.22",
              "pool4": "features.23", "conv5_3": "features.29", "pool5": "features.30",
              "fc6": "classifier.1", "fc7": "classifier.4", "logits": "classifier.6"},
    "vgg19": {"conv3_4": "features.17", "pool3": "features.18", "conv4_3": "features.24", "conv4_4": "features.26",
              "conv5_3": "features.33", "conv5_4": "features.35", "pool5": "features.36",
              "fc6": "classifier.1", "fc7": "classifier.4", "logits": "classifier.6"},
    "vgg16_bn": {"conv1_1": "features.2", "conv4_3": "features.32", "conv5_3": "features.42", "pool5": "features.43",
                 "fc7": "classifier.4"},
    "vgg11": {"conv1_1": "features.1", "pool1": "features.2", "conv5_2": "features.19", "pool5": "features.20"},
}


@pytest.mark.parametrize("arch", sorted(VGG_NODES))
def test_vgg_aliases_follow_each_configuration(arch):
    with torch.device("meta"):  # the structure is enough: no weights to initialise
        model = torchvision.models.get_model(arch)
    aliases = vgg_aliases(model)
    assert {name: aliases.get(name) for name in VGG_NODES[arch]} == VGG_NODES[arch]
    assert "conv5_4" in aliases if arch == "vgg19" else "conv5_4" not in aliases
    assert features_mod._arch_name(model, None) == arch  # the name in the cache key and file


@pytest.mark.parametrize("arch", ["alexnet", "densenet121", "mobilenet_v2"])
def test_other_models_with_features_and_classifier_get_no_vgg_names(arch):
    with torch.device("meta"):
        model = torchvision.models.get_model(arch)
    assert vgg_aliases(model) == {}


@pytest.mark.slow
def test_resnet50_avgpool_is_the_pooled_last_stage():
    x, batches = two_images()
    resnet = torchvision.models.resnet50().eval()
    pooled, _ = extract_features(resnet, "avgpool", batches, progress=False)
    assert pooled.shape == (2, 2048)
    with torch.no_grad():
        expected = nn.Sequential(*list(resnet.children())[:-1])(x).flatten(1)
    torch.testing.assert_close(pooled, expected)


def test_mini_resnet_stage_aliases_are_the_stage_outputs():
    from tlhelpers.models.mini_resnet import mini_resnet

    x, batches = two_images()
    torch.manual_seed(0)
    model = mini_resnet(10).eval()
    assert {"layer3", "avgpool"} <= set(valid_layers(model))
    feats, _ = extract_features(model, ["layer3", "avgpool"], batches, progress=False)
    with torch.no_grad():
        stem = model.relu(model.bn1(model.conv1(x)))
        layer3 = model.layer3(model.layer2(model.layer1(stem)))
        pooled = model.layer4(layer3).mean(dim=(2, 3))
    torch.testing.assert_close(feats["layer3"], layer3.mean(dim=(2, 3)))
    torch.testing.assert_close(feats["avgpool"], pooled)


@pytest.mark.parametrize("arch", ["resnet18", "resnet101"])
def test_resnet_stage_aliases_are_each_depths_last_block(arch):
    with torch.device("meta"):  # only the structure: no weights to initialise
        model = torchvision.models.get_model(arch)
    aliases = features_mod.layer_aliases(model)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        last = len(getattr(model, stage)) - 1  # resnet101's layer3 has 23 blocks: the last is layer3.22
        relu = "relu_2" if arch == "resnet101" else "relu_1"  # a block's output: its last ReLU call
        assert aliases[stage] == f"{stage}.{last}.{relu}"
    assert aliases["layer3"] == ("layer3.22.relu_2" if arch == "resnet101" else "layer3.1.relu_1")
    assert features_mod._arch_name(model, None) == arch  # the real name, for messages and the cache key


def test_vgg19_conv5_3_is_the_relu_after_the_third_conv_of_block_5():
    with torch.device("meta"):
        model = torchvision.models.vgg19()
    layers = list(model.features)
    pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    block5_convs = [i for i in range(pools[3] + 1, pools[4]) if isinstance(layers[i], nn.Conv2d)]
    expected = block5_convs[2] + 1  # the ReLU right after block 5's third convolution
    assert isinstance(layers[expected], nn.ReLU)
    assert features_mod.resolve_layer(model, "conv5_3") == f"features.{expected}" == "features.33"
    assert features_mod.resolve_layer(model, "conv5_4") == "features.35"


def test_alias_on_an_architecture_without_it_lists_valid_names():
    with torch.device("meta"):
        model = torchvision.models.efficientnet_b0()
    with pytest.raises(LayerNotFoundError, match="model 'efficientnet' has no layer 'layer3'; use one of: ") as err:
        features_mod.resolve_layer(model, "layer3")
    message = str(err.value)
    assert "\n" not in message and "avgpool, logits, " in message and "features.0, " in message


def test_extract_features_resnet18_layer3_and_error_name_the_real_model():
    x, batches = two_images()
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18().eval()
    feats, _ = extract_features(resnet, "layer3", batches, progress=False)
    with torch.no_grad():
        stem = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
        expected = resnet.layer3(resnet.layer2(resnet.layer1(stem))).mean(dim=(2, 3))
    torch.testing.assert_close(feats, expected)
    with pytest.raises(LayerNotFoundError, match="model 'resnet18' has no layer 'conv5_3'"):
        extract_features(resnet, "conv5_3", batches, progress=False)
