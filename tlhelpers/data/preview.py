"""Look at the data before training on it: a grid of images with their labels, and what the
training augmentations do to one image.

Images that went through the preprocessing of pretrained weights are normalised with the ImageNet
mean and std and look wrong when drawn as they are. The functions here find the normalisation in
the transform (a torchvision ``Normalize``, v1 or v2, or a weights preset such as
``weights.transforms()``) and undo it, so the images look as they should.

Example:
    >>> fig = show_batch(train_ds, n=8)                          # normalisation found in train_ds.transform
    >>> fig = show_augmentations(train_ds, 0, image_transforms(preset, train=True))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from tlhelpers.core.checkpoint import load_loader_state, loader_state

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def find_normalizations(transform: Any) -> list[Stats]:
    """The ``(mean, std)`` of every normalisation inside ``transform``, in the order they are applied.

    Finds torchvision's ``transforms.Normalize`` and ``transforms.v2.Normalize``, and the weights
    presets (``weights.transforms()``, :func:`tlhelpers.data.preprocessing.plain_preset`), inside
    ``Compose`` (v1 or v2), ``RandomApply``, ``nn.Sequential`` and a torchvision dataset's
    ``StandardTransform``. A plain function or lambda cannot be looked into.

    Args:
        transform: a transform, or None.

    Returns:
        A list of ``(mean, std)`` tuples; empty when none is found.
    """
    from torchvision import transforms as v1
    from torchvision.transforms import v2
    from torchvision.transforms._presets import ImageClassification

    found: list[Stats] = []

    def walk(obj: Any, depth: int) -> None:
        if obj is None or depth > 8:
            return
        if isinstance(obj, (v1.Normalize, v2.Normalize, ImageClassification)):
            found.append((tuple(float(m) for m in obj.mean), tuple(float(s) for s in obj.std)))
            return
        if isinstance(obj, (list, tuple)):
            for part in obj:
                walk(part, depth + 1)
            return
        if isinstance(obj, torch.nn.Sequential):
            for part in obj:
                walk(part, depth + 1)
            return
        for name in ("transforms", "transform"):  # Compose, RandomApply, RandomChoice, StandardTransform
            part = getattr(obj, name, None)
            if part is not None and part is not obj:
                walk(part, depth + 1)
                return

    walk(transform, 0)
    return found


def denormalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Undo ``Normalize(mean, std)``: ``x * std + mean`` per channel.

    Args:
        images: normalised float images.
        mean: one value per channel (or one for all).
        std: one value per channel (or one for all).

    Shape:
        images: ``(C, H, W)`` or ``(N, C, H, W)``; returns the same shape.

    Returns:
        The images in the scale they had before normalisation (``[0, 1]`` for the course's data).

    Raises:
        ValueError: if ``mean``/``std`` have neither one value nor one per channel.
    """
    channels = images.shape[-3]
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ValueError(f"mean has {len(mean)} and std {len(std)} values but the images have {channels} channels; "
                         f"pass one value per channel.")
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return images * s + m


def _source(obj: Any, attribute: str) -> Any:
    """``attribute`` of ``obj``, or of the dataset it wraps (a loader's, a Subset's), or None."""
    for _ in range(6):
        if obj is None:
            return None
        value = getattr(obj, attribute, None)
        if value is not None:
            return value
        datasets = getattr(obj, "datasets", None)  # ConcatDataset
        obj = getattr(obj, "dataset", None) or (datasets[0] if datasets else None)
    return None


def _as_image(x: Any) -> Tensor:
    """A ``(C, H, W)`` float tensor from a tensor (uint8 scaled to [0, 1]) or a PIL image."""
    if not isinstance(x, Tensor):
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        if not isinstance(x, Image.Image):
            raise TypeError(f"cannot show an item of type {type(x).__name__}; give (C, H, W) tensors or PIL images.")
        x = pil_to_tensor(x.convert("RGB") if x.mode not in ("L", "RGB") else x)
    x = x.detach().cpu()
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"an image has shape {tuple(x.shape)}; expected (C, H, W) with 1 or 3 channels.")
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()


def _for_display(x: Any, norms: Sequence[Stats]) -> Any:
    """The numpy array ``imshow`` gets: ``(H, W)`` for grey, ``(H, W, 3)`` for colour, in [0, 1]."""
    image = _as_image(x)
    normalised = isinstance(x, Tensor) and x.is_floating_point()  # uint8 tensors and PIL images never are
    if normalised and norms:
        for mean, std in reversed(norms):
            image = denormalize(image, mean, std)
    elif image.min() < -1e-3 or image.max() > 1 + 1e-3:  # normalised by something we cannot see into
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    image = image.clamp(0, 1)
    return (image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy()


def _label_name(y: Any, class_names: Sequence[str] | None) -> str:
    value = y.item() if isinstance(y, Tensor) and y.numel() == 1 else y
    if class_names is not None and isinstance(value, int) and 0 <= value < len(class_names):
        return str(class_names[value])
    return str(value)


def _draw(ax: Any, array: Any, title: str) -> None:
    from tlhelpers.core.style import TILE_TITLE_SIZE

    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=TILE_TITLE_SIZE)
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(count: int, ncols: int = 8) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    cols = min(count, ncols)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _take(dataset_or_loader: Any, n: int, seed: int) -> list[tuple[Any, Any]]:
    """``n`` items: random ones of a dataset (by ``seed``), the first ones of a loader."""
    items: list[tuple[Any, Any]] = []
    if hasattr(dataset_or_loader, "__getitem__") and hasattr(dataset_or_loader, "__len__"):
        size = len(dataset_or_loader)
        if size == 0:
            raise ValueError("the dataset is empty; give it some images.")
        order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]
        items = []
        for i in order.tolist():
            item = dataset_or_loader[i]
            items.append((item[0], item[1]))
        return items
    for batch in dataset_or_loader:
        xs, ys = batch[0], batch[1]
        items.extend(zip(xs, ys))
        if len(items) >= n:
            break
    if not items:
        raise ValueError("the loader yielded no batches; give it data (an exhausted iterator cannot be reused).")
    return items[:n]


def show_batch(
    dataset_or_loader: Iterable[Any],
    n: int = 8,
    *,
    transform: Callable[..., Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    seed: int = 0,
) -> Figure:
    """A grid of ``n`` images, each titled with its class name, with the normalisation undone.

    A dataset shows ``n`` items chosen at random by ``seed``; a loader shows the first ``n`` items of
    its first batches. The items are drawn under a fixed seed and the random state is put back
    afterwards (global generators and the loader's own), so previewing changes nothing in training.

    Args:
        dataset_or_loader: a dataset of ``(image, label)`` items or a loader of ``(images, labels)``
            batches. Images are ``(C, H, W)`` tensors (1 or 3 channels; uint8, float in [0, 1] or
            normalised) or PIL images.
        n: the number of images (fewer when the dataset is smaller).
        transform: the transform the items went through, searched for the normalisation to undo;
            default the dataset's own ``transform`` (found through loaders and Subsets). It only tells
            what to undo: to show items through another transform use ``dataset.with_transform(...)``.
        mean: the normalisation's mean, instead of searching; give ``std`` too.
        std: the normalisation's std, instead of searching.
        class_names: a name per class index; default the dataset's ``classes``, else the label itself.
        title: a title over the grid.
        seed: which items of a dataset, and the draws of a random transform.

    Returns:
        The closed figure (shown once, as a cell's value or with ``display``).

    Raises:
        ValueError: if ``n < 1``, only one of ``mean``/``std`` is given, or there is nothing to show.
    """
    from tlhelpers.core.style import LABEL_SIZE, finish

    if n < 1:
        raise ValueError(f"n={n} must be at least 1.")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (the Normalize to undo), or neither to find it in the transform.")
    norms: list[Stats] = ([(tuple(mean), tuple(std))] if mean is not None and std is not None
                          else find_normalizations(transform if transform is not None
                                                   else _source(dataset_or_loader, "transform")))
    names = class_names if class_names is not None else _source(dataset_or_loader, "classes")
    saved = loader_state(dataset_or_loader)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        items = _take(dataset_or_loader, n, seed)
    load_loader_state(dataset_or_loader, saved)
    fig, axes = _grid(len(items))
    for ax, (x, y) in zip(axes.flat, items):
        ax.axis("on")
        _draw(ax, _for_display(x, norms), _label_name(y, names))
    if title:
        fig.suptitle(title, fontsize=LABEL_SIZE)
    return finish(fig)


def _raw_image(dataset: Any, index: int) -> Any:
    """The stored image at ``index``, before any transform."""
    images = getattr(dataset, "images", None)
    if isinstance(images, Tensor):  # ImageTensorDataset
        return images[index]
    with_transform = getattr(dataset, "with_transform", None)
    if callable(with_transform):
        return with_transform(None)[index][0]
    return dataset[index][0]


def show_augmentations(dataset: Any, index: int, transform: Callable[[Any], Any], n: int = 8, seed: int = 0) -> Figure:
    """One image as stored, then ``n`` times through ``transform``: what the training augmentation does.

    The first tile is the image without any transform (the dataset's stored uint8 image for the
    course's :class:`~tlhelpers.data.tensor_dataset.ImageTensorDataset`, else what
    ``dataset.with_transform(None)`` or the dataset itself returns); the others are ``transform``
    applied afresh each time, drawn under ``seed`` with the random state put back afterwards, and
    shown with the normalisation found in ``transform`` undone. A deterministic transform (the
    evaluation preset) gives ``n`` identical tiles; a random one (``image_transforms(preset,
    train=True)``) gives ``n`` different crops and flips.

    Args:
        dataset: a dataset of ``(image, label)`` items.
        index: the item to show.
        transform: the training transform, taking the stored image (uint8 ``(C, H, W)`` tensor or PIL).
        n: the number of augmented copies.
        seed: the seed of the augmentations' random draws.

    Returns:
        The closed figure (shown once, as a cell's value or with ``display``).

    Raises:
        ValueError: if ``n < 1`` or ``index`` is out of range.
    """
    from tlhelpers.core.style import LABEL_SIZE, finish

    if n < 1:
        raise ValueError(f"n={n} must be at least 1.")
    size = len(dataset)
    if not -size <= index < size:
        raise ValueError(f"index={index} is out of range for a dataset of {size} items; use 0 <= index < {size}.")
    raw = _raw_image(dataset, index)
    norms = find_normalizations(transform)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        copies = [transform(raw) for _ in range(n)]
    fig, axes = _grid(n + 1, ncols=min(n + 1, 9))
    for ax, (image, name) in zip(axes.flat, [(raw, "original"), *((c, f"augmented {i + 1}") for i, c in enumerate(copies))]):
        ax.axis("on")
        _draw(ax, _for_display(image, norms if name != "original" else []), name)
    labels = getattr(dataset, "labels", None)
    label = labels[index] if isinstance(labels, Tensor) else dataset[index][1]
    names = _source(dataset, "classes")
    fig.suptitle(f"item {index} ({_label_name(label, names)}): without and with the training augmentation",
                 fontsize=LABEL_SIZE)
    return finish(fig)


__all__ = ["denormalize", "find_normalizations", "show_augmentations", "show_batch"]
