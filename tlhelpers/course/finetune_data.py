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

from tlhelpers.core.runtime import data_root
from tlhelpers.data.tensor_dataset import ImageTensorDataset

#: Reduced-mode targets and the shapes style that draws each.
TARGETS: dict[str, str] = {"near": "plain", "far": "fine"}


def load_finetune_data(
    reduced: bool,
    image_size: int,
    *,
    target: str = "near",
    n_per_class: int | None = None,
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
        n_per_class: reduced mode only: training and test images per class (validation gets a
            third as many from the shapes' own validation stream); None means 30.
        val_fraction: full mode: share of Pets' trainval split held out for validation curves.
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
    from tlhelpers.data.tensor_cache import to_tensor_dataset
    from tlhelpers.data.torchvision_sets import load_dataset

    root = Path(root) if root is not None else data_root()
    parts = []
    for split in ("trainval", "test"):
        raw = load_dataset("pets", split, root=root)
        cache = root / "cache" / f"pets_{split}_{image_size}px.pt"
        parts.append(to_tensor_dataset(raw, image_size, cache_file=cache, progress=progress))
    trainval, test = parts
    train, val = trainval.split(1 - val_fraction, seed=seed)
    return train, val, test
