"""Omniglot for few-shot learning: the standard class split with rotations, held as uint8 tensors.

The protocol of Vinyals et al. (2016), used by ProtoNet and MAML: resize to 28x28, draw 1200
characters at random for training and keep the rest for testing, and add each character rotated
by 90, 180 and 270 degrees as new classes (4 x 1200 = 4800 training classes). Test characters get
rotations too, as in Snell et al.

The same functions serve any extracted ``alphabet/character/*.png`` folder and the small Omniglot
subset packaged with ``tlhelpers`` (:func:`load_omniglot_small`: 136 real characters of 5
alphabets, MIT licence, read offline), which is reduced mode's data in chapter 4.

Example:
    >>> images = load_omniglot()                       # torchvision download, cached tensors
    >>> train, test = omniglot_protocol(images, n_train_classes=1200)
    >>> len(train.classes), len(test.classes)
    (4800, 1692)
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from tlhelpers.core.checkpoint import atomic_save, safe_load
from tlhelpers.data.tensor_dataset import ImageTensorDataset

STANDARD_TRAIN_CLASSES = 1200
STANDARD_TOTAL_CLASSES = 1623
#: The packaged subset (``brendenlake/omniglot`` ``python/images_background_small1.zip``).
SMALL_ARCHIVE = "omniglot_small1.zip"
SMALL_CHARACTERS = 136


def rotate_classes(dataset: ImageTensorDataset, angles: tuple[int, ...] = (0, 90, 180, 270)) -> ImageTensorDataset:
    """Each (class, angle) pair becomes its own class; images rotated counter-clockwise.

    Returns:
        ``len(angles)`` times the images and classes; class ``c`` at angle index ``a`` gets label
        ``a * num_classes + c`` and the name ``"<name>@<angle>"``.

    Raises:
        ValueError: if an angle is not a multiple of 90.
    """
    if any(a % 90 for a in angles):
        raise ValueError(f"angles {angles} must be multiples of 90 (exact pixel rotations).")
    n = dataset.num_classes
    images = torch.cat([torch.rot90(dataset.images, k=a // 90, dims=(2, 3)) for a in angles])
    labels = torch.cat([dataset.labels + i * n for i in range(len(angles))])
    names = [f"{name}@{a}" for a in angles for name in dataset.classes]
    return ImageTensorDataset(images.contiguous(), labels, names)


def split_classes(
    dataset: ImageTensorDataset, n_train_classes: int, seed: int = 0
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Split the *classes* at random into a training and a test set, each relabelled from 0.

    Raises:
        ValueError: if either side would have no class.
    """
    n = dataset.num_classes
    if not 0 < n_train_classes < n:
        raise ValueError(f"n_train_classes={n_train_classes} must be between 1 and {n - 1} (the data set has {n} classes).")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = []
    for chosen in (order[:n_train_classes].sort().values, order[n_train_classes:].sort().values):
        new_label = torch.full((n,), -1, dtype=torch.long)
        new_label[chosen] = torch.arange(len(chosen))
        keep = new_label[dataset.labels] >= 0
        parts.append(ImageTensorDataset(
            dataset.images[keep], new_label[dataset.labels[keep]], [dataset.classes[int(c)] for c in chosen]
        ))
    return parts[0], parts[1]


def omniglot_protocol(
    dataset: ImageTensorDataset, n_train_classes: int | None = None, rotations: bool = True, seed: int = 0
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """The standard split: ``n_train_classes`` characters for training, the rest for test, + rotations.

    Args:
        dataset: all characters (e.g. :func:`load_omniglot` or :func:`load_character_folder`).
        n_train_classes: training characters; None means 1200 of 1623 for the full Omniglot and
            the same share (74 %) of a smaller collection.
        rotations: add 90/180/270 degree rotations as extra classes to both sides.
        seed: seed of the class split.

    Returns:
        ``(train, test)`` datasets.
    """
    if n_train_classes is None:
        n = dataset.num_classes
        n_train_classes = STANDARD_TRAIN_CLASSES if n >= STANDARD_TOTAL_CLASSES else round(n * STANDARD_TRAIN_CLASSES / STANDARD_TOTAL_CLASSES)
    train, test = split_classes(dataset, n_train_classes, seed)
    if rotations:
        train, test = rotate_classes(train), rotate_classes(test)
    return train, test


def _decode(dataset: Any, image_size: int, desc: str, progress: bool) -> tuple[np.ndarray, list[int]]:
    """Grey PIL items ``(image, label)`` -> uint8 ``(N, S, S)`` and labels (RGB caching would waste 3x)."""
    images, labels = [], []
    for i in tqdm(range(len(dataset)), desc=desc, disable=not progress, leave=False):
        image, label = dataset[i]
        small = image.convert("L").resize((image_size, image_size), Image.Resampling.LANCZOS)
        images.append(np.asarray(small, dtype=np.uint8))
        labels.append(int(label))
    return np.stack(images), labels


def _cached(cache_file: str | Path | None) -> ImageTensorDataset | None:
    if cache_file is None or not Path(cache_file).exists():
        return None
    state = safe_load(cache_file, kind="Omniglot cache", fix="delete it and call again to decode the images anew.")
    return ImageTensorDataset(state["images"], state["labels"], state["classes"])


def _save(dataset: ImageTensorDataset, cache_file: str | Path | None) -> ImageTensorDataset:
    if cache_file is not None:
        atomic_save({"images": dataset.images, "labels": dataset.labels, "classes": dataset.classes}, cache_file)
    return dataset


def load_character_folder(
    root: str | Path, image_size: int = 28, cache_file: str | Path | None = None, progress: bool = True
) -> ImageTensorDataset:
    """Read an extracted Omniglot tree ``root/alphabet/character/*.png`` into uint8 tensors.

    Files are found by ``tlhelpers.data.torchvision_sets.omniglot_folder``.

    Args:
        root: the tree's folder, or a folder holding exactly one such tree.
        image_size: output side in pixels (28 in the standard protocol).
        cache_file: where to keep the decoded tensors; loaded instead of decoding when present.
        progress: show a tqdm bar while decoding.

    Returns:
        One class per character, named ``"alphabet/character"``; dark strokes on white.

    Raises:
        ValueError: if no ``alphabet/character/*.png`` files are found under ``root``.
    """
    from tlhelpers.data.torchvision_sets import omniglot_folder

    cached = _cached(cache_file)
    if cached is not None:
        return cached
    folder = omniglot_folder(root)
    images, labels = _decode(folder, image_size, "decode", progress)
    dataset = ImageTensorDataset(torch.from_numpy(images).unsqueeze(1), torch.tensor(labels), folder.classes)
    return _save(dataset, cache_file)


def load_omniglot(
    root: str | Path | None = None, image_size: int = 28, download: bool = True, progress: bool = True
) -> ImageTensorDataset:
    """All 1623 Omniglot characters (background and evaluation alphabets) via torchvision, as uint8.

    Decoded and resized once; the tensors are cached under ``root`` (``runtime.data_root()`` when
    None) so later runs load in a second.

    Raises:
        tlhelpers.data.torchvision_sets.DatasetUnavailableError: offline without a local copy.
    """
    from tlhelpers.core.runtime import data_root
    from tlhelpers.data.torchvision_sets import load_dataset

    base = Path(root) if root is not None else data_root()
    cache = base / f"omniglot_all_{image_size}px.pt"
    cached = _cached(cache)
    if cached is not None:
        return cached
    parts: list[np.ndarray] = []
    labels: list[int] = []
    classes: list[str] = []
    for split in ("background", "evaluation"):
        folder = load_dataset("omniglot", split, root=base, download=download)
        images, split_labels = _decode(folder, image_size, f"decode omniglot {split}", progress)
        parts.append(images)
        labels.extend(len(classes) + y for y in split_labels)
        classes.extend(f"{split}/{c}" for c in folder.classes)
    dataset = ImageTensorDataset(torch.from_numpy(np.concatenate(parts)).unsqueeze(1), torch.tensor(labels), classes)
    return _save(dataset, cache)


def small_archive() -> Path:
    """Path of the Omniglot subset shipped inside the package (``tlhelpers/data/assets``).

    Raises:
        FileNotFoundError: if the install lacks the file, naming the fix.
    """
    path = Path(str(resources.files("tlhelpers.data") / "assets" / SMALL_ARCHIVE))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from this tlhelpers install; reinstall it (pip install --force-reinstall tlhelpers)."
        )
    return path


def load_omniglot_small(
    image_size: int = 28, root: str | Path | None = None, progress: bool = True
) -> ImageTensorDataset:
    """The packaged Omniglot subset: 136 characters of 5 alphabets, 20 drawings each, offline.

    The archive is unzipped into a temporary folder, decoded and resized once, and cached as uint8
    tensors in ``<root>/cache/``; the cache file's name carries the archive's MD5, so a changed
    archive is never served stale tensors. Nothing is downloaded.

    Args:
        image_size: output side in pixels (28 in the standard protocol).
        root: data folder for the cache; ``runtime.data_root()`` when None.
        progress: show a tqdm bar while decoding (first call only).

    Returns:
        One class per character, named ``"alphabet/characterNN"``; dark strokes on white.
    """
    from tlhelpers.core.runtime import data_root

    archive = small_archive()
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    cache_dir = (Path(root) if root is not None else data_root()) / "cache"
    cache = cache_dir / f"omniglot_small1_{image_size}px_{digest[:10]}.pt"
    cached = _cached(cache)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".omniglot_small1_") as tmp:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        return load_character_folder(tmp, image_size=image_size, cache_file=cache, progress=progress)
