"""Preprocessing that matches the pretrained weights: the weights' own preset, and training
augmentation derived from it.

Every torchvision weights enum carries the evaluation preprocessing its accuracy was measured with
(``weights.transforms()``): ResNet-50's ``IMAGENET1K_V2`` resizes the shorter side to 232 with
bilinear interpolation, centre-crops 224 and normalises with the ImageNet mean and std; VGG16's
``IMAGENET1K_V1`` resizes to 256 instead. A hand-written 256 -> 224 pipeline is close but not the
one the weights expect. Here evaluation uses that preset object itself, and training augmentation
takes its crop size, interpolation, mean and std from it, so the two can never drift apart.

Every transform returned here accepts a PIL image or a ``(C, H, W)`` tensor (uint8 or float), so
the same object works for ``ImageFolder(transform=...)`` and for the course's uint8 tensor datasets.

Example:
    >>> preset = weights_preset("resnet50")           # resize 232, crop 224, bilinear, ImageNet stats
    >>> train_tf = image_transforms(preset, train=True)
    >>> eval_tf = image_transforms(preset, train=False)  # the preset itself
"""

from __future__ import annotations

import torch
from torchvision.models import WeightsEnum
from torchvision.transforms import v2

# The class of every ``weights.transforms()`` object (torchvision >= 0.13); its constructor is the
# only way to build the same preset for an architecture without weights, such as mini_resnet.
from torchvision.transforms._presets import ImageClassification

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def weights_preset(
    arch: str, weights: WeightsEnum | str | None = "DEFAULT", image_size: int | None = None
) -> ImageClassification:
    """The evaluation preprocessing the weights of ``arch`` expect.

    Args:
        arch: an architecture name, e.g. ``"resnet50"`` (see ``tlhelpers.models.backbones``).
        weights: the weights (``"DEFAULT"``, a name or an enum). ``None`` (random init) gets the
            preset of the architecture's default weights, so pretrained and from-scratch models
            see identical inputs.
        image_size: crop size for a smaller budget; the resize size is scaled by the same factor
            (232/224 for ResNet-50). None keeps the weights' own sizes. Required for
            architectures without weights (``mini_resnet``), which get ImageNet statistics and
            no extra resize margin.

    Returns:
        The preset; ``.crop_size``, ``.resize_size``, ``.interpolation``, ``.mean`` and ``.std``
        describe it and calling it transforms one image.

    Raises:
        ValueError: for an unknown architecture or weights, a missing ``image_size`` where one is
            needed, or ``image_size < 8``.
    """
    from tlhelpers.models.backbones import resolve_weights

    if image_size is not None and image_size < 8:
        raise ValueError(f"image_size={image_size} is too small; use 8 pixels or more (224 for ImageNet weights).")
    try:
        enum = resolve_weights(arch, weights if weights is not None else "DEFAULT")
    except ValueError:
        if weights is not None:
            raise
        enum = None  # an architecture with no weights at all, e.g. mini_resnet
    if enum is None:
        if image_size is None:
            raise ValueError(f"{arch} has no pretrained weights to take sizes from; pass image_size, e.g. 32.")
        return plain_preset(image_size)
    preset = enum.transforms()
    if image_size is None or image_size == preset.crop_size[0]:
        return preset
    resize = round(image_size * preset.resize_size[0] / preset.crop_size[0])
    return enum.transforms(crop_size=image_size, resize_size=resize)


def plain_preset(
    image_size: int, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> ImageClassification:
    """A preset for images already drawn at ``image_size``: no resize margin, ImageNet statistics.

    For generated data (the reduced mode's shapes) and architectures without pretrained weights.

    Raises:
        ValueError: if ``image_size < 8``.
    """
    if image_size < 8:
        raise ValueError(f"image_size={image_size} is too small; use 8 pixels or more.")
    return ImageClassification(crop_size=image_size, resize_size=image_size, mean=mean, std=std)


def stored_size(preset: ImageClassification) -> int:
    """The side to decode and cache images at: the preset's resize size (never below its crop).

    Images stored as squares of this side go through the preset's resize unchanged and its
    centre crop as usual, and leave random training crops room to move.
    """
    return max(preset.resize_size[0], preset.crop_size[0])


def image_transforms(
    preset: ImageClassification, train: bool, crop_scale: tuple[float, float] = (0.35, 1.0)
) -> ImageClassification | v2.Compose:
    """Evaluation or training transforms for ``preset`` (see :func:`weights_preset`).

    Evaluation returns the preset itself. Training takes a random crop of ``crop_scale`` of the
    image area, resized to the preset's crop size with its interpolation, flips it horizontally at
    random, and ends with the preset's float conversion and mean/std normalisation.

    Args:
        preset: the weights' preprocessing.
        train: augmentation for training (True) or the deterministic evaluation preset (False).
        crop_scale: range of the crop's share of the image area (training only).

    Returns:
        A callable taking a PIL image or a ``(C, H, W)`` tensor and returning a normalised float
        tensor ``(C, crop, crop)``.

    Raises:
        ValueError: if ``crop_scale`` is not within ``(0, 1]`` and increasing.
    """
    if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(f"crop_scale={crop_scale} must satisfy 0 < low <= high <= 1, e.g. (0.35, 1.0).")
    if not train:
        return preset
    return v2.Compose([
        v2.PILToTensor(),  # PIL images become uint8 tensors; tensors pass through
        v2.RandomResizedCrop(preset.crop_size[0], scale=crop_scale, interpolation=preset.interpolation,
                             antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(preset.mean), list(preset.std)),
    ])


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "image_transforms", "plain_preset", "stored_size", "weights_preset"]
