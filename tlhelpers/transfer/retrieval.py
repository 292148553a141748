"""Image retrieval by cosine similarity of features: nearest neighbours and a figure of them.

Example:
    >>> scores, idx = cosine_neighbors(feats[:1], feats, k=8, exclude_self=True)
    >>> fig = show_neighbors(images, query_index=0, neighbors=idx[0], scores=scores[0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def cosine_neighbors(
    queries: Tensor,
    gallery: Tensor,
    k: int = 8,
    *,
    exclude_self: bool = False,
    query_indices: Tensor | Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` gallery rows most cosine-similar to each query, best first.

    Args:
        queries: query features, ``(Q, D)`` or one ``(D,)`` vector.
        gallery: features to search.
        k: neighbours per query.
        exclude_self: the queries are gallery rows (``query_indices``, or rows ``0..Q-1`` when
            None); leave each query's own row out of its neighbours.
        query_indices: gallery rows of the queries, used with ``exclude_self``.

    Returns:
        ``(similarities, indices)``, both ``(Q, k)``; similarities in [-1, 1], descending.

    Shape:
        queries: ``(Q, D)``; gallery: ``(N, D)``.

    Raises:
        ValueError: on mismatched dimensions, or ``k`` outside ``1..N`` (``N - 1`` with exclude_self).
    """
    q = queries.float().unsqueeze(0) if queries.ndim == 1 else queries.float()
    g = gallery.float()
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and gallery {tuple(g.shape)} must be (Q, D) and (N, D) with the same D.")
    limit = len(g) - int(exclude_self)
    if not 1 <= k <= limit:
        raise ValueError(f"k={k} is out of range; use 1..{limit} for a gallery of {len(g)} rows.")
    sims = F.normalize(q, dim=1) @ F.normalize(g, dim=1).T
    if exclude_self:
        rows = torch.arange(len(q)) if query_indices is None else torch.as_tensor(query_indices).long()
        sims[torch.arange(len(q)), rows] = -float("inf")
    return sims.topk(k, dim=1)


def precision_at_k(features: Tensor, labels: Tensor, k: int = 8) -> float:
    """Mean share of each item's ``k`` nearest neighbours (itself excluded) that have its label.

    Chance level is about the share of the most common class; a value well above it means the
    features group images by class.
    """
    _, idx = cosine_neighbors(features, features, k, exclude_self=True)
    return (labels[idx] == labels[:, None]).float().mean().item()


def _as_image(img: Tensor) -> Any:
    img = img.detach().cpu()
    img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
    if img.min() < 0 or img.max() > 1:  # normalized input: rescale for display only
        img = (img - img.min()) / (img.max() - img.min() + 1e-8)
    if img.shape[0] == 1:
        return img[0].numpy()
    return img.permute(1, 2, 0).numpy()


def show_neighbors(
    images: Tensor,
    query_index: int,
    neighbors: Tensor | Sequence[int],
    scores: Tensor | Sequence[float] | None = None,
    labels: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    *,
    digits: int = 3,
) -> Figure:
    """A row of images: the query, then its neighbours, each titled with its rank, class and similarity.

    A neighbour of the query's class is marked twice, so the match reads without colour: a check
    mark before its class and a green title (a cross and a black title otherwise).

    Args:
        images: the gallery images, uint8 or float.
        query_index: row of the query image.
        neighbors: gallery rows of the neighbours, best first.
        scores: similarities shown under each neighbour.
        labels: class indices, to name classes and mark matches.
        class_names: names for ``labels``.
        digits: decimals of the scores; cosines of non-negative (ReLU) features all lie close to 1,
            so two decimals would print "1.00" for every neighbour.

    Returns:
        The matplotlib figure (closed: show it once, as a cell's value or with ``display``).

    Shape:
        images: ``(N, C, H, W)`` with C = 1 or 3.
    """
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import LABEL_SIZE, finish

    neighbors = [int(i) for i in neighbors]
    fig, axes = plt.subplots(1, len(neighbors) + 1, figsize=(1.75 * (len(neighbors) + 1), 2.6))

    def name(i: int) -> str:
        if labels is None:
            return f"#{i}"
        c = int(labels[i])
        return class_names[c] if class_names is not None else f"class {c}"

    for j, (ax, i) in enumerate(zip(axes, [query_index, *neighbors])):
        ax.imshow(_as_image(images[i]), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            ax.set_title(f"query\n{name(i)}", fontsize=LABEL_SIZE, fontweight="bold")
            for spine in ax.spines.values():
                spine.set_linewidth(2.5)
            continue
        same = labels is not None and int(labels[i]) == int(labels[query_index])
        mark = ("\u2713 " if same else "\u2717 ") if labels is not None else ""
        sim = f"\n{float(scores[j - 1]):.{digits}f}" if scores is not None else ""
        ax.set_title(f"#{j} {mark}{name(i)}{sim}", fontsize=LABEL_SIZE - 1, color="green" if same else "black")
    return finish(fig)
