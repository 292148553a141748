"""Data for fine-tuning: Oxford-IIIT Pet (full mode) or the offline shapes (reduced mode), and transforms.

Full mode decodes Pets once into uint8 tensors cached under ``data_root()/cache`` (decoding JPEGs
every epoch would starve a Colab GPU). Reduced mode draws the shapes task (classes 0-9) in
process. Either way you get three :class:`~tlhelpers.data.tensor_dataset.ImageTensorDataset`
(train, val, test) and the transforms below, so the rest of the code is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.transforms import v2

from tlhelpers.data.tensor_dataset import ImageTensorDataset
from tlhelpers.runtime import data_root

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_transforms(
    image_size: int,
    train: bool,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    crop_scale: tuple[float, float] = (0.35, 1.0),
) -> v2.Compose:
    """Per-image transforms for uint8 tensors ``(C, H, W)``: augmentation when training, then normalisation.

    Training: a random crop of ``crop_scale`` of the area resized to ``image_size`` and a horizontal
    flip. Evaluation: resize the shorter side and centre-crop ``image_size``. Both end with float
    conversion and the mean/std the pretrained weights expect (``weights.transforms().mean``).

    Raises:
        ValueError: if ``image_size < 8``.
    """
    if image_size < 8:
        raise ValueError(f"image_size={image_size} is too small; use 8 pixels or more (224 for ImageNet weights).")
    if train:
        geometry = [v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([*geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def load_finetune_data(
    reduced: bool,
    image_size: int,
    *,
    n_per_class: int | None = None,
    val_fraction: float = 0.1,
    root: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ImageTensorDataset, ImageTensorDataset, ImageTensorDataset]:
    """Train, validation and test sets of the chapter's target task, as uint8 tensors (no transform).

    Args:
        reduced: shapes classes 0-9 (True) or Oxford-IIIT Pet, 37 breeds (False).
        image_size: side of the images; Pets is cached at ``image_size * 8 // 7`` (256 for 224) so
            random crops have room, the shapes are drawn at ``image_size``.
        n_per_class: reduced mode only: training and test images per class (validation gets a
            third as many from the shapes' own validation stream); None means 30.
        val_fraction: full mode: share of Pets' trainval split held out for validation curves.
        root: data folder; default :func:`tlhelpers.runtime.data_root`.
        seed: seed of the shapes and of the train/val split.
        progress: progress bar while decoding Pets.

    Returns:
        ``(train, val, test)``; ``train.classes`` names the classes.

    Raises:
        tlhelpers.data.torchvision_sets.DatasetUnavailableError: full mode, Pets neither on disk
            nor downloadable.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be strictly between 0 and 1, e.g. 0.1.")
    if reduced:
        from tlhelpers.data.shapes import make_shapes

        n = n_per_class or 30
        # the shapes have their own validation stream: no training image is given up for it
        return (make_shapes("train", n, image_size, seed=seed),
                make_shapes("val", max(1, n // 3), image_size, seed=seed),
                make_shapes("test", n, image_size, seed=seed))
    from tlhelpers.data.tensor_cache import to_tensor_dataset
    from tlhelpers.data.torchvision_sets import load_dataset

    root = Path(root) if root is not None else data_root()
    size = image_size * 8 // 7
    parts = []
    for split in ("trainval", "test"):
        raw = load_dataset("pets", split, root=root)
        cache = root / "cache" / f"pets_{split}_{size}px.pt"
        parts.append(to_tensor_dataset(raw, size, cache_file=cache, progress=progress))
    trainval, test = parts
    train, val = trainval.split(1 - val_fraction, seed=seed)
    return train, val, test
