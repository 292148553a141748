"""Data for fine-tuning: Oxford-IIIT Pet (full mode) or the offline shapes (reduced mode), and transforms.

Full mode decodes Pets once into uint8 tensors cached under ``data_root()/cache`` (decoding JPEGs
every epoch would starve a Colab GPU). Reduced mode draws the shapes task (classes 0-9) in
process, as one of two targets of the proxy pretraining on classes 10-19
(:mod:`tlhelpers.course.proxy_pretraining`):

- ``target="near"``: drawn like the pretraining images (same colours, backgrounds and texture
  scale), only the classes are new;
- ``target="far"``: the same classes with every fill a 2-3 pixel texture (``style="fine"`` of
  :func:`~tlhelpers.course.shapes.make_shapes`), low-level statistics the pretraining never saw.
 Either way you get three :class:`~tlhelpers.data.tensor_dataset.ImageTensorDataset`
(train, val, test) with no transform; ``tlhelpers.data.preprocessing`` gives the transforms, so the rest
of the code is the same in both modes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tlhelpers.core.runtime import data_root
from tlhelpers.data.balanced import balanced_indices
from tlhelpers.data.tensor_dataset import ImageTensorDataset

#: Reduced-mode targets and the shapes style that draws each.
TARGETS: dict[str, str] = {"near": "plain", "far": "fine"}


def load_finetune_data(
    reduced: bool,
    image_size: int,
    *,
    target: str = "near",
    n_per_class: int | None = None,
    n_test_per_class: int | None = None,
    val_fraction: float = 0.1,
    root: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ImageTensorDataset, ImageTensorDataset, ImageTensorDataset]:
    """Train, validation and test sets of the chapter's target task, as uint8 tensors (no transform).

    Args:
        reduced: shapes classes 0-9 (True) or Oxford-IIIT Pet, 37 breeds (False).
        image_size: side of the stored square images: Pets is decoded, resized and centre-cropped
            to it once and cached; the shapes are drawn at it. Pass
            ``tlhelpers.data.preprocessing.stored_size(preset)`` (232 for ResNet-50's weights), so the
            weights' preset resizes nothing and crops as it would on the original photo.
        target: reduced mode: ``"near"`` (drawn like the pretraining task) or ``"far"`` (fine
            textures); full mode has only Pets, ``"near"``.
        n_per_class: training images per class. Reduced: also the test images per class (validation
            gets a third as many from the shapes' own validation stream); None means 30. Pets: a
            class-balanced sample of the trainval split (validation gets a quarter as many, at least
            2, from the rest), so a laptop decodes and trains on a subset; None uses all of it.
        n_test_per_class: Pets only: a class-balanced sample of the test split; None keeps all of it.
        val_fraction: Pets without ``n_per_class``: share of the trainval split held out for validation curves.
        root: data folder; default :func:`tlhelpers.core.runtime.data_root`.
        seed: seed of the shapes and of the train/val split.
        progress: progress bar while decoding Pets.

    Returns:
        ``(train, val, test)``; ``train.classes`` names the classes.

    Raises:
        ValueError: for an unknown target, ``target="far"`` in full mode, or a bad ``val_fraction``.
        tlhelpers.data.torchvision_sets.DatasetUnavailableError: full mode, Pets neither on disk
            nor downloadable.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be strictly between 0 and 1, e.g. 0.1.")
    if target not in TARGETS:
        raise ValueError(f"target={target!r} is unknown; use one of {', '.join(TARGETS)}.")
    if reduced:
        from tlhelpers.course.shapes import make_shapes

        n = n_per_class or 30
        style = TARGETS[target]
        # the shapes have their own validation stream: no training image is given up for it
        return (make_shapes("train", n, image_size, seed=seed, style=style),
                make_shapes("val", max(1, n // 3), image_size, seed=seed, style=style),
                make_shapes("test", n, image_size, seed=seed, style=style))
    if target != "near":
        raise ValueError(f"target={target!r} exists only in reduced mode; full mode fine-tunes on Pets, use target='near'.")
    from tlhelpers.data.torchvision_sets import load_dataset

    root = Path(root) if root is not None else data_root()
    trainval_raw, test_raw = (load_dataset("pets", split, root=root) for split in ("trainval", "test"))
    test = _decoded(test_raw, "test", image_size, root, progress, n_test_per_class, seed)
    if n_per_class is None:
        train, val = _decoded(trainval_raw, "trainval", image_size, root, progress).split(1 - val_fraction, seed=seed)
        return train, val, test
    n_val = max(2, n_per_class // 4)
    trainval = _decoded(trainval_raw, "trainval", image_size, root, progress, n_per_class + n_val, seed)
    # n_per_class of each class for training; the other n_val of each validate
    take = balanced_indices(trainval.labels, n_per_class * len(trainval.classes), seed=seed)
    rest = torch.ones(len(trainval), dtype=torch.bool)
    rest[take] = False
    return trainval.subset(take), trainval.subset(rest.nonzero().flatten()), test


def _decoded(raw: Any, split: str, image_size: int, root: Path, progress: bool, n_per_class: int | None = None,
             seed: int = 0) -> ImageTensorDataset:
    """``raw`` (or a class-balanced sample of ``n_per_class`` per class) decoded once into cached uint8 tensors."""
    from torch.utils.data import Subset

    from tlhelpers.data.tensor_cache import to_tensor_dataset

    name = f"pets_{split}_{image_size}px"
    classes = raw.classes
    if n_per_class is not None:
        labels = torch.as_tensor(_pets_labels(raw))
        raw = Subset(raw, balanced_indices(labels, n_per_class * len(classes), seed=seed).tolist())
        name += f"_{n_per_class}per_class_seed{seed}"
    return to_tensor_dataset(raw, image_size, cache_file=root / "cache" / f"{name}.pt", progress=progress,
                             classes=classes)


def _pets_labels(raw: Any) -> list[int]:
    """The class index of every image, read from the annotation list (no image is decoded)."""
    labels = getattr(raw, "_labels", None)  # torchvision's OxfordIIITPet keeps the parsed list here
    if labels is None:
        raise TypeError(f"{type(raw).__name__} lists no labels; pass n_per_class=None to decode every image.")
    return [int(label) for label in labels]
