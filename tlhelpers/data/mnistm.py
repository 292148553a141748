"""MNIST-M built the paper's way: MNIST digits blended with random crops of colour photos.

Ganin & Lempitsky (2015) made MNIST-M by taking, for every MNIST digit, a random patch of a
BSDS500 photo and setting each channel to ``|patch - digit|``. BSDS500 cannot be fetched from
here, so the default photos are those scikit-learn ships (``sample_photos()``); pass your own
list of photos (e.g. BSDS500 images) to get closer to the original. The result is cached under
``root/mnistm/`` and reused.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tlhelpers.checkpoint import atomic_save
from tlhelpers.data.digits import DIGIT_CLASSES, blend_with_photos, sample_photos
from tlhelpers.data.tensor_dataset import ImageTensorDataset

_SPLIT_IDS = {"train": 0, "test": 1}


def _fingerprint(photos: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha1()
    for p in photos:
        arr = np.ascontiguousarray(p)
        digest.update(str(arr.shape).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()[:12]


def build_mnistm(
    root: str | Path,
    split: str = "train",
    photos: Sequence[np.ndarray] | None = None,
    seed: int = 0,
    download: bool = True,
) -> ImageTensorDataset:
    """Build (or load from cache) MNIST-M from torchvision MNIST and colour photos.

    Args:
        root: data folder holding ``MNIST/`` (downloaded there if missing and allowed); the
            result is cached in ``root/mnistm/``.
        split: ``"train"`` or ``"test"``.
        photos: uint8 ``(H, W, 3)`` colour photos at least 28 px on each side; default
            ``sample_photos()``.
        seed: seed of the photo and crop choice.
        download: allow downloading MNIST when it is missing.

    Returns:
        RGB digits on photo textures, classes ``"0"`` .. ``"9"``.

    Shape:
        images: ``(N, 3, 28, 28)`` uint8, N as in MNIST's split.

    Raises:
        ValueError: on an unknown split or unusable photos.
        DatasetUnavailableError: if MNIST is missing and cannot be downloaded.
    """
    from tlhelpers.data.torchvision_sets import load_dataset

    if split not in _SPLIT_IDS:
        raise ValueError(f"split={split!r} is unknown; use one of {sorted(_SPLIT_IDS)}.")
    root = Path(root)
    photos = sample_photos() if photos is None else [np.asarray(p) for p in photos]
    if not photos:
        raise ValueError("photos is empty; pass colour photos or None for sample_photos().")
    tag = _fingerprint(photos)
    cache = root / "mnistm" / f"mnistm_{split}_seed{seed}_{tag}.pt"
    mnist = load_dataset("mnist", split, root=root, download=download)
    key = {"split": split, "seed": seed, "photos": tag, "len": len(mnist)}
    if cache.is_file():
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            if blob["key"] == key:
                return ImageTensorDataset(blob["images"], blob["labels"], list(DIGIT_CLASSES))
        except Exception as exc:  # a partial or foreign file is rebuilt, never trusted
            warnings.warn(f"cache file {cache} is unreadable ({exc!r:.80}); rebuilding it.", stacklevel=2)
    generator = torch.Generator().manual_seed(seed * 2 + _SPLIT_IDS[split])
    digits = mnist.data.to(torch.uint8)
    images = blend_with_photos(digits, photos, generator)
    labels = torch.as_tensor(mnist.targets, dtype=torch.int64)
    atomic_save({"key": key, "images": images, "labels": labels}, cache)
    return ImageTensorDataset(images, labels, list(DIGIT_CLASSES))
