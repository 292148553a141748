"""A class-balanced random sample of a labelled data set, for figures and widgets that show data.

Test splits are often stored class by class (Oxford-IIIT Pet's lists breed after breed), so
"the first 12 test images" shows one or two classes. :func:`balanced_indices` draws the same
number of images from every class, in random order, so a grid or a query picker shows the data.

Example:
    >>> import torch
    >>> labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    >>> idx = balanced_indices(labels, 6, seed=0)
    >>> sorted(torch.bincount(labels[idx]).tolist())
    [2, 2, 2]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def balanced_indices(labels: Tensor | Sequence[int], n: int, seed: int = 0) -> Tensor:
    """Indices of ``n`` items (at most all of them) spread evenly over the classes, in random order.

    Classes take turns in a random order, each giving a random item it has not given yet; a class
    that runs out drops out of the rotation. So every class present gets ``n // classes`` or one
    more item while it has them, and no index repeats.

    Args:
        labels: the class index of every item.
        n: how many indices to return; fewer when there are fewer items.
        seed: seed of the draw (the same seed gives the same sample).

    Returns:
        int64 indices into ``labels``, shape ``(min(n, len(labels)),)``.

    Raises:
        ValueError: if ``n < 1`` or ``labels`` is not one-dimensional.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels have shape {tuple(labels.shape)}; pass one class index per item, shape (N,).")
    if n < 1:
        raise ValueError(f"n={n} must be at least 1, e.g. 12 for a grid of 12 images.")
    generator = torch.Generator().manual_seed(seed)
    queues = []
    for c in labels.unique().tolist():
        members = torch.nonzero(labels == c).flatten()
        queues.append(members[torch.randperm(len(members), generator=generator)].tolist())
    order = torch.randperm(len(queues), generator=generator).tolist()
    picked: list[int] = []
    depth = 0
    while len(picked) < min(n, len(labels)):
        for q in order:
            if depth < len(queues[q]) and len(picked) < n:
                picked.append(queues[q][depth])
        depth += 1
    shuffled = torch.tensor(picked, dtype=torch.int64)
    return shuffled[torch.randperm(len(shuffled), generator=generator)]


__all__ = ["balanced_indices"]
