"""A dataset of uint8 image tensors held in memory (``ImageTensorDataset``).

Every dataset in the course ends up in this form: the reduced-mode generators build it directly,
and ``tensor_cache.to_tensor_dataset`` decodes a torchvision dataset into it once. Keeping images
as uint8 costs a quarter of float32 memory and makes ``__getitem__`` a cheap slice.

Example:
    >>> import torch
    >>> images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    >>> ds = ImageTensorDataset(images, torch.tensor([0, 1, 0, 1]), ["cat", "dog"])
    >>> x, y = ds[1]
    >>> x.shape, x.dtype, y
    (torch.Size([3, 8, 8]), torch.float32, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

Transform = Callable[[Tensor], Tensor]


class ImageTensorDataset(Dataset):
    """Images and labels as tensors, with class names and an optional per-item transform.

    Args:
        images: uint8 images.
        labels: int64 class indices in ``[0, len(classes))``.
        classes: one human-readable name per class.
        transform: applied to the uint8 image ``(C, H, W)`` of each item; without one the item is
            the image as float in ``[0, 1]``.

    Shape:
        images: ``(N, C, H, W)``; labels: ``(N,)``.

    Raises:
        ValueError: on a wrong dtype, shape, length mismatch or a label outside the class range.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        classes: Sequence[str],
        transform: Transform | None = None,
    ) -> None:
        if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
            raise ValueError("images and labels must be torch tensors; wrap arrays with torch.as_tensor.")
        if images.dtype != torch.uint8:
            raise ValueError(
                f"images have dtype {images.dtype}, expected torch.uint8; "
                "convert with (images * 255).round().to(torch.uint8)."
            )
        if images.ndim != 4:
            raise ValueError(
                f"images have shape {tuple(images.shape)}, expected (N, C, H, W); "
                "add a channel axis with images.unsqueeze(1)."
            )
        if labels.ndim != 1:
            raise ValueError(f"labels have shape {tuple(labels.shape)}, expected (N,); flatten them.")
        if labels.dtype != torch.int64:
            raise ValueError(f"labels have dtype {labels.dtype}, expected torch.int64; use labels.long().")
        if len(labels) != len(images):
            raise ValueError(
                f"{len(images)} images but {len(labels)} labels; pass one label per image."
            )
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError("classes is empty; pass one name per class.")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise ValueError(
                f"labels span [{int(labels.min())}, {int(labels.max())}] but there are "
                f"{len(classes)} classes; labels must lie in [0, {len(classes) - 1}]."
            )
        self.images = images
        self.labels = labels
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        image = self.images[i]
        x = self.transform(image) if self.transform is not None else image.float().div_(255)
        return x, int(self.labels[i])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes})"
        )

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of ``classes``, whether or not all occur)."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def with_transform(self, transform: Transform | None) -> ImageTensorDataset:
        """Return a view with another transform; the tensors are shared, not copied.

        Args:
            transform: the new per-item transform, or None for plain float scaling.

        Returns:
            A dataset over the same tensors.
        """
        return ImageTensorDataset(self.images, self.labels, self.classes, transform)

    def subset(self, indices: Sequence[int] | Tensor) -> ImageTensorDataset:
        """Return the items at ``indices`` (copied by indexing), keeping classes and transform.

        Args:
            indices: positions or a boolean mask of length ``len(self)``.

        Returns:
            The selected items as a new dataset.

        Raises:
            ValueError: if an index is out of range.
        """
        idx = torch.as_tensor(indices)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise ValueError(f"a mask must have length {len(self)}, got shape {tuple(idx.shape)}.")
            idx = idx.nonzero().flatten()
        idx = idx.long().flatten()
        if len(idx) and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise ValueError(f"indices out of range for a dataset of {len(self)} items.")
        return ImageTensorDataset(self.images[idx], self.labels[idx], self.classes, self.transform)

    def split(
        self, fraction: float, seed: int = 0
    ) -> tuple[ImageTensorDataset, ImageTensorDataset]:
        """Split into two parts, stratified per class, e.g. train / validation.

        Each class contributes ``round(fraction * count)`` items to the first part (at least one
        to each part when the class has two or more items), chosen at random from ``seed``.

        Args:
            fraction: share of each class that goes to the first part, in ``(0, 1)``.
            seed: seed of the shuffle; the same seed gives the same split.

        Returns:
            ``(first, second)``, each in the original item order.

        Raises:
            ValueError: if ``fraction`` is not strictly between 0 and 1.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction={fraction} must be strictly between 0 and 1, e.g. 0.8.")
        gen = torch.Generator().manual_seed(seed)
        first: list[Tensor] = []
        second: list[Tensor] = []
        for c in range(self.num_classes):
            members = (self.labels == c).nonzero().flatten()
            n = len(members)
            if n == 0:
                continue
            members = members[torch.randperm(n, generator=gen)]
            k = round(fraction * n)
            if n >= 2:
                k = min(max(k, 1), n - 1)
            first.append(members[:k])
            second.append(members[k:])
        a = torch.cat(first).sort().values if first else torch.empty(0, dtype=torch.long)
        b = torch.cat(second).sort().values if second else torch.empty(0, dtype=torch.long)
        return self.subset(a), self.subset(b)
