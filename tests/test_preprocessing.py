"""Tests for tlhelpers.data.preprocessing: the weights' preset, and training transforms derived from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet50_Weights, VGG16_Weights
from torchvision.transforms import v2
from torchvision.transforms.functional import InterpolationMode

from tlhelpers.data.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_transforms,
    plain_preset,
    stored_size,
    weights_preset,
)


def test_preset_is_the_weights_own():
    preset = weights_preset("resnet50")
    assert (preset.crop_size, preset.resize_size) == ([224], [232])
    assert preset.interpolation == InterpolationMode.BILINEAR
    assert repr(preset) == repr(ResNet50_Weights.IMAGENET1K_V2.transforms())
    assert weights_preset("vgg16").resize_size == [256]
    # random init sees exactly the inputs of the pretrained model it is compared with
    assert repr(weights_preset("resnet50", weights=None)) == repr(preset)
    assert stored_size(preset) == 232 and stored_size(weights_preset("vgg16")) == 256


def test_eval_transform_matches_the_weights_preset_on_pil_and_tensor():
    torch.manual_seed(0)
    pil = Image.fromarray(torch.randint(0, 256, (300, 260, 3), dtype=torch.uint8).numpy())
    tensor = torch.from_numpy(np.array(pil)).permute(2, 0, 1)
    reference = VGG16_Weights.IMAGENET1K_V1.transforms()
    ours = image_transforms(weights_preset("vgg16"), train=False)
    expected = reference(pil)
    assert expected.shape == (3, 224, 224)
    torch.testing.assert_close(ours(pil), expected)
    # the tensor path of torchvision's resize matches PIL's up to rounding
    assert (ours(tensor) - expected).abs().mean() < 0.02


@pytest.mark.parametrize("make", [lambda: Image.new("RGB", (90, 70), (200, 10, 10)),
                                  lambda: torch.tensor([200, 10, 10], dtype=torch.uint8).view(3, 1, 1).expand(3, 70, 90),
                                  lambda: (torch.tensor([200, 10, 10]) / 255).view(3, 1, 1).expand(3, 70, 90)])
def test_train_transform_accepts_pil_uint8_and_float(make):
    preset = weights_preset("resnet50", image_size=32)
    out = image_transforms(preset, train=True)(make())
    assert type(out) is torch.Tensor and out.shape == (3, 32, 32) and out.dtype == torch.float32
    # a constant image normalises to (value - mean) / std in every pixel of every crop
    expected = (torch.tensor([200, 10, 10]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out.mean((1, 2)), expected.float(), atol=1e-3, rtol=0)


def test_train_transform_takes_sizes_and_statistics_from_the_preset():
    preset = weights_preset("resnet50", image_size=160)
    assert (preset.crop_size, preset.resize_size) == ([160], [166])  # 232/224 of the crop
    train = image_transforms(preset, train=True, crop_scale=(0.5, 1.0))
    crop = next(t for t in train.transforms if isinstance(t, v2.RandomResizedCrop))
    norm = next(t for t in train.transforms if isinstance(t, v2.Normalize))
    assert crop.size == (160, 160) and crop.scale == (0.5, 1.0) and crop.interpolation == preset.interpolation
    assert norm.mean == list(preset.mean) and norm.std == list(preset.std)


def test_plain_preset_is_identity_geometry():
    images = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    out = image_transforms(plain_preset(16, mean=(0, 0, 0), std=(1, 1, 1)), train=False)(images)
    torch.testing.assert_close(out, images.float() / 255)
    assert weights_preset("mini_resnet", weights=None, image_size=16).resize_size == [16]


@pytest.mark.parametrize("call, match", [
    (lambda: weights_preset("mini_resnet", weights=None), "pass image_size"),
    (lambda: weights_preset("mini_resnet"), "no pretrained weights"),
    (lambda: weights_preset("resnet50", image_size=4), "too small"),
    (lambda: weights_preset("resnet50", weights="IMAGENET9"), "unknown weights"),
    (lambda: image_transforms(plain_preset(16), train=True, crop_scale=(0.0, 1.0)), "crop_scale"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
