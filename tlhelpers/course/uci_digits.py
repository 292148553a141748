"""Real handwritten digits that ship with scikit-learn (UCI optdigits), and the same digits on photos.

scikit-learn packages 1,797 digits written by real people (the test part of the UCI "Optical
Recognition of Handwritten Digits" set, ``sklearn.datasets.load_digits``): each is an 8x8 grid
whose cells count the ink pixels (0-16) in a 4x4 block of a 32x32 scan. No download is needed.

Two domains come from them:

- ``make_uci_digits``: the digits themselves, as grey uint8 images at their native 8x8
  resolution (counts scaled to 0-255); the domain-pair loader resizes them to 32x32 like every
  other domain.
- ``make_uci_digits_m``: the MNIST-M recipe (Ganin & Lempitsky, 2015) applied to them: each digit,
  resized to ``image_size``, is blended with a random crop of a colour photo as ``|photo - digit|``.
  As MNIST-M reuses the MNIST training digits, its training split reuses the same training digits.

The train/test split is fixed (stratified, independent of any run's seed), so a test image is
never a training image of either domain, whatever seeds a run uses.

Example:
    >>> ds = make_uci_digits("test")
    >>> ds.image_shape, len(ds)
    ((1, 8, 8), 719)
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tlhelpers.course.digits import DIGIT_CLASSES, blend_with_photos, sample_photos
from tlhelpers.data.tensor_dataset import ImageTensorDataset

TEST_FRACTION = 0.4  # 719 test and 1,078 training digits
_SPLIT_SEED = 20151  # fixed: the split must not move with a run's seed
_MAX_COUNT = 16  # an 8x8 cell counts the ink pixels of a 4x4 block


@lru_cache(maxsize=1)
def load_uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits and labels as scikit-learn ships them.

    Read straight from the package's ``digits.csv.gz`` (importing ``sklearn.datasets`` takes
    about a second); falls back to ``sklearn.datasets.load_digits``.

    Returns:
        ``(images, labels)``: uint8 counts 0-16 of shape ``(1797, 8, 8)``, int64 labels 0-9.

    Raises:
        ModuleNotFoundError: if scikit-learn is not installed (``pip install scikit-learn``).
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as fh:
                table = np.loadtxt(fh, delimiter=",")
            return table[:, :64].reshape(-1, 8, 8).astype(np.uint8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.uint8), bunch.target.astype(np.int64)


@lru_cache(maxsize=2)
def split_indices(split: str) -> np.ndarray:
    """Row numbers of ``split`` in :func:`load_uci_digits`: a fixed stratified split.

    ``TEST_FRACTION`` of every class goes to ``"test"``, the rest to ``"train"``; the two never
    share a row, and neither depends on a run's seed.

    Raises:
        ValueError: on a split other than ``"train"`` or ``"test"``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is unknown; use 'train' or 'test'.")
    _, labels = load_uci_digits()
    rng = np.random.default_rng(_SPLIT_SEED)
    test = []
    for c in range(10):
        rows = rng.permutation(np.flatnonzero(labels == c))
        test.append(rows[: int(round(TEST_FRACTION * len(rows)))])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test)] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def _rows(split: str, n: int | None, seed: int) -> np.ndarray:
    rows = split_indices(split)
    if n is not None:
        if n < 1:
            raise ValueError(f"n={n} must be at least 1, or None for the whole split.")
        if n < len(rows):
            rows = np.sort(np.random.default_rng([seed, 3]).choice(rows, size=n, replace=False))
    return rows


def make_uci_digits(split: str = "train", n: int | None = None, seed: int = 0) -> ImageTensorDataset:
    """Real handwritten digits at their native 8x8 resolution, grey, one channel.

    Args:
        split: ``"train"`` (1,078 digits) or ``"test"`` (719).
        n: a random subset of this many digits of the split; None (or more than the split holds)
            for all of them.
        seed: seed of the subset.

    Returns:
        White-on-black digits, counts 0-16 scaled to 0-255, classes ``"0"`` .. ``"9"``.

    Shape:
        images: ``(n, 1, 8, 8)`` uint8.

    Raises:
        ValueError: on an unknown split or ``n < 1``.
    """
    rows = _rows(split, n, seed)
    counts, labels = load_uci_digits()
    grey = np.round(counts[rows].astype(np.float32) * (255 / _MAX_COUNT)).astype(np.uint8)
    return ImageTensorDataset(torch.from_numpy(grey[:, None]), torch.from_numpy(labels[rows]), list(DIGIT_CLASSES))


def make_uci_digits_m(
    split: str = "train", n: int | None = None, image_size: int = 32, seed: int = 0
) -> ImageTensorDataset:
    """The same real digits blended onto colour photo crops (the MNIST-M recipe): the target domain.

    Each digit is first resized to ``image_size`` (bilinear, antialiased, as the pair loader
    resizes the plain digits), then blended with a random crop of one of scikit-learn's sample
    photos, downscaled like :func:`tlhelpers.course.digits.make_mnistm_style` does.

    Args:
        split: ``"train"`` or ``"test"`` (the rows of :func:`split_indices`).
        n: a random subset of this many digits; None for the whole split.
        image_size: height and width in pixels (at least 8).
        seed: seed of the subset and of the photo and crop choice.

    Returns:
        RGB digits on photo textures, classes ``"0"`` .. ``"9"``.

    Shape:
        images: ``(n, 3, image_size, image_size)`` uint8.

    Raises:
        ValueError: on an unknown split, ``n < 1`` or ``image_size < 8``.
    """
    if image_size < 8:
        raise ValueError(f"image_size={image_size} is too small for digits; use 8 or more.")
    plain = make_uci_digits(split, n, seed)
    grey = F.interpolate(
        plain.images.float(), size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
    ).round().clamp(0, 255).to(torch.uint8)
    photos = sample_photos()
    factor = max(1, min(p.shape[0] for p in photos) // (image_size * 6))
    photos = [p[::factor, ::factor] for p in photos]
    generator = torch.Generator().manual_seed(int(np.random.default_rng([seed, 4]).integers(0, 2**62)))
    return ImageTensorDataset(blend_with_photos(grey, photos, generator), plain.labels, plain.classes)


__all__ = ["TEST_FRACTION", "load_uci_digits", "make_uci_digits", "make_uci_digits_m", "split_indices"]
