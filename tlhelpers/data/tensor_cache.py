"""Decode and resize an image dataset once, and cache it as uint8 tensors on disk.

Decoding JPEGs and resizing them is often the slowest part of an epoch on a small GPU; doing it
once and keeping ``(N, 3, S, S)`` uint8 tensors makes later epochs and reruns of a notebook cost
only the model's time. The cache file holds a small key (image size, length, classes and, for a
folder of image files, a fingerprint of its content); a call with another key recomputes, and a
truncated or corrupt file is recomputed with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlhelpers.core.checkpoint import atomic_save, fingerprint_dataset
from tlhelpers.data.tensor_dataset import ImageTensorDataset

_FORMAT = 1


def _to_square_rgb(image: Any, image_size: int) -> np.ndarray:
    """Resize the shorter side to ``image_size``, centre-crop a square, return ``(S, S, 3)``."""
    from PIL import Image

    if isinstance(image, torch.Tensor):
        raise ValueError(
            "the dataset yields tensors; pass it without a transform so that it yields PIL images."
        )
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    image = image.convert("RGB")
    w, h = image.size
    scale = image_size / min(w, h)
    new_w, new_h = max(image_size, round(w * scale)), max(image_size, round(h * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
    return np.array(image.crop((left, top, left + image_size, top + image_size)))


def _key(image_size: int, length: int, classes: Sequence[str] | None, content: str | None = None) -> dict[str, Any]:
    names = None if classes is None else [str(c) for c in classes]
    return {"format": _FORMAT, "image_size": image_size, "len": length, "classes": names, "content": content}


def content_key(dataset: Any) -> str | None:
    """The content part of a cache key: a fingerprint of the files behind ``dataset``, when it has them.

    For a dataset with ``samples`` of ``(file path, label)`` (torchvision's ``ImageFolder``) this is
    :func:`tlhelpers.core.checkpoint.fingerprint_dataset` with modification times: each file's relative path,
    size, modification time and label. So adding, removing, editing or moving a file between class
    folders gives a new key, without decoding a single image. Other datasets have no content key
    (reading them to hash would cost what the cache saves): pass ``fingerprint=`` for them.

    Args:
        dataset: the dataset about to be decoded.

    Returns:
        16 hex digits, or None.
    """
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, Sequence) and all(isinstance(s, (tuple, list)) and len(s) >= 2 for s in samples[:1]):
        return fingerprint_dataset(dataset, mtimes=True)
    return None


def _read_cache(path: Path, key: dict[str, Any]) -> ImageTensorDataset | None:
    """Return the cached dataset if ``path`` holds a complete file with this key, else None.

    A key whose ``classes`` is None matches any stored class list.
    """
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        stored = blob["key"]
        if key["classes"] is None:
            key = {**key, "classes": stored.get("classes")}
        if stored != key:
            return None
        images, labels = blob["images"], blob["labels"]
        if images.shape != (key["len"], 3, key["image_size"], key["image_size"]):
            raise ValueError(f"cached images have shape {tuple(images.shape)}")
        return ImageTensorDataset(images, labels, stored["classes"])
    except Exception as exc:  # a partial or foreign file must never pass as a cache hit
        warnings.warn(f"cache file {path} is unreadable ({exc!r:.80}); recomputing it.", stacklevel=3)
        return None


def to_tensor_dataset(
    dataset: Any,
    image_size: int,
    cache_file: str | Path | None = None,
    progress: bool = True,
    classes: Sequence[str] | None = None,
    fingerprint: str | None = None,
) -> ImageTensorDataset:
    """Decode every item of an image dataset once into uint8 tensors, optionally cached on disk.

    Each image is converted to RGB (grey images too), its shorter side resized to ``image_size``
    and the centre square cropped. With ``cache_file`` the tensors are saved atomically and
    reused on the next call whose image size, length, classes and content key match: for an image
    folder the files' paths, sizes, modification times and labels (:func:`content_key`), so moving
    a file to another class folder recomputes instead of reusing the old labels.

    Args:
        dataset: a map-style dataset yielding ``(PIL image, int label)``, e.g. a torchvision
            dataset built without ``transform``.
        image_size: side of the square output images.
        cache_file: where to keep the tensors (a ``.pt`` file), or None for no cache.
        progress: show a tqdm progress bar while decoding.
        classes: class names; default ``dataset.classes``, else ``"0"``, ``"1"``, ...
        fingerprint: the content key to store and compare; default :func:`content_key` (None for a
            dataset that is not a folder of files: then only the length and classes are compared).

    Returns:
        The images and labels as an ``ImageTensorDataset`` (no transform).

    Shape:
        images: ``(len(dataset), 3, image_size, image_size)`` uint8.

    Raises:
        ValueError: if ``image_size < 1``, the dataset yields tensors, or labels are not ints.
    """
    if image_size < 1:
        raise ValueError(f"image_size={image_size} must be a positive number of pixels, e.g. 224.")
    if classes is None:
        classes = getattr(dataset, "classes", None)
    n = len(dataset)
    path = Path(cache_file) if cache_file is not None else None
    content = None
    if path is not None:
        content = fingerprint if fingerprint is not None else content_key(dataset)
        cached = _read_cache(path, _key(image_size, n, classes, content))
        if cached is not None:
            return cached

    from tqdm.auto import tqdm

    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.int64)
    for i in tqdm(range(n), desc="decoding images", disable=not progress):
        image, label = dataset[i]
        if not isinstance(label, (int, np.integer)) and not (
            isinstance(label, torch.Tensor) and label.numel() == 1
        ):
            raise ValueError(
                f"item {i} has label {label!r}; use a dataset whose target is one class index."
            )
        images[i] = torch.from_numpy(_to_square_rgb(image, image_size)).permute(2, 0, 1)
        labels[i] = int(label)
    if classes is None:
        classes = [str(c) for c in range(int(labels.max()) + 1 if n else 1)]
    result = ImageTensorDataset(images, labels, classes)
    if path is not None:
        key = _key(image_size, n, result.classes, content)
        atomic_save({"key": key, "images": images, "labels": labels}, path)
    return result
