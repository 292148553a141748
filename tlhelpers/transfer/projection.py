"""2-D pictures of high-dimensional features: PCA or t-SNE embeddings and a scatter plot.

``embed_2d`` returns the points (data), ``scatter_2d`` draws them coloured by class and, with
``groups``, with one marker per group (e.g. source vs target domain in chapter 3).
``neighbor_agreement`` puts a number on "the classes form clusters in the map", and
``cross_neighbor_agreement`` on "the target points sit in the source cluster of their class".

Example:
    >>> points = embed_2d(features, method="tsne", seed=0)
    >>> fig = scatter_2d(points, labels, label_names=classes, title="fc7 features")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_METHODS = ("pca", "tsne")
_MARKERS = ("o", "^", "s", "x", "D", "v", "*", "P")


def embed_2d(
    features: Tensor | np.ndarray,
    method: str = "tsne",
    seed: int = 0,
    *,
    perplexity: float = 30.0,
    standardize: bool = True,
) -> np.ndarray:
    """Embed feature vectors in 2-D with scikit-learn's PCA or t-SNE.

    t-SNE first reduces to 50 dimensions with PCA (the usual speed-up) and lowers ``perplexity``
    when there are too few points for it.

    Args:
        features: one row per item.
        method: ``"pca"`` (fast, linear, global layout) or ``"tsne"`` (neighbourhoods).
        seed: random state of the embedding.
        perplexity: t-SNE's effective number of neighbours.
        standardize: scale every feature to zero mean and unit variance first.

    Returns:
        The 2-D points as float32.

    Shape:
        features: ``(N, D)``; returns ``(N, 2)``.

    Raises:
        ValueError: for an unknown method, fewer than 3 rows, or a non-2-D input.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if method not in _METHODS:
        raise ValueError(f"method={method!r} is unknown; use one of {_METHODS}.")
    x = features.detach().cpu().float().numpy() if isinstance(features, Tensor) else np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"features have shape {x.shape}; pass at least 3 rows of shape (N, D).")
    if standardize:
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32)
    if x.shape[1] > 50:
        x = PCA(n_components=min(50, len(x) - 1), random_state=seed).fit_transform(x)
    perp = min(perplexity, max(1.0, (len(x) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
    # A few thousand points: OpenMP threads mostly wait on each other (badly so on a shared CPU).
    with threadpool_limits(1 if len(x) <= 2000 else None):
        return tsne.fit_transform(x).astype(np.float32)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All squared Euclidean distances between the rows of ``a`` and ``b``, without an (N, M, D) array."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def neighbor_agreement(
    points: np.ndarray | Tensor,
    labels: Sequence[int] | np.ndarray | Tensor,
    k: int = 5,
) -> float:
    """Mean share of each point's ``k`` nearest neighbours in the map (Euclidean, itself excluded) that share its label.

    A map whose classes form separate clusters scores near 1; one with mixed colours scores near
    the share of a class (0.1 for ten balanced classes).

    Args:
        points: the embedding from :func:`embed_2d`.
        labels: class index of each point.
        k: neighbours per point.

    Shape:
        points: ``(N, 2)`` (any ``(N, D)`` works); labels: ``(N,)``.

    Raises:
        ValueError: if the lengths differ or ``k`` is outside ``1..N-1``.
    """
    pts = np.asarray(points.detach().cpu() if isinstance(points, Tensor) else points, dtype=np.float64)
    lab = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).astype(int)
    if pts.ndim != 2 or len(pts) != len(lab):
        raise ValueError(f"points {pts.shape} and labels ({len(lab)},) must be (N, D) and (N,).")
    if not 1 <= k < len(pts):
        raise ValueError(f"k={k} is out of range; use 1..{len(pts) - 1} for {len(pts)} points.")
    dist = _squared_distances(pts, pts)
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return float((lab[nearest] == lab[:, None]).mean())


def cross_neighbor_agreement(
    query_points: np.ndarray | Tensor,
    query_labels: Sequence[int] | np.ndarray | Tensor,
    reference_points: np.ndarray | Tensor,
    reference_labels: Sequence[int] | np.ndarray | Tensor,
    k: int = 5,
) -> float:
    """Mean share of each query point's ``k`` nearest *reference* points (Euclidean) that share its label.

    With target points as queries and source points as reference, it measures how far the target
    sits inside the source clusters of its own class: near 1 when every target point lands in the
    right source cluster, near the share of a class when target points fall among any class.

    Args:
        query_points: e.g. the target points of an embedding (or their features).
        query_labels: class index of each query point.
        reference_points: e.g. the source points, in the same space.
        reference_labels: class index of each reference point.
        k: reference neighbours per query point.

    Shape:
        query_points: ``(Q, D)``; reference_points: ``(R, D)``; labels ``(Q,)`` and ``(R,)``.

    Raises:
        ValueError: if shapes disagree or ``k`` is outside ``1..R``.
    """
    def as_array(x: Any, dtype: Any) -> np.ndarray:
        return np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=dtype)

    qp, rp = as_array(query_points, np.float64), as_array(reference_points, np.float64)
    ql, rl = as_array(query_labels, np.int64), as_array(reference_labels, np.int64)
    if qp.ndim != 2 or rp.ndim != 2 or qp.shape[1] != rp.shape[1] or len(qp) != len(ql) or len(rp) != len(rl):
        raise ValueError(f"query points {qp.shape} with {len(ql)} labels and reference points {rp.shape} with "
                         f"{len(rl)} labels must be (Q, D), (Q,), (R, D), (R,) with the same D.")
    if not 1 <= k <= len(rp):
        raise ValueError(f"k={k} is out of range; use 1..{len(rp)} for {len(rp)} reference points.")
    dist = _squared_distances(qp, rp)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return float((rl[nearest] == ql[:, None]).mean())


def scatter_2d(
    points: np.ndarray | Tensor,
    labels: Sequence[int] | np.ndarray | Tensor,
    label_names: Sequence[str] | None = None,
    groups: Sequence[int] | np.ndarray | Tensor | None = None,
    group_names: Sequence[str] | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Scatter 2-D points coloured by label, with one marker shape per group.

    Args:
        points: the embedding from :func:`embed_2d`.
        labels: class index of each point (colour).
        label_names: legend names of the classes.
        groups: group index of each point (marker), e.g. 0 = source, 1 = target domain.
        group_names: legend names of the groups.
        title: axes title.
        ax: axes to draw into; a new figure when None.

    Returns:
        The matplotlib figure; closed (shown once, as a cell's value) when this call created it.
        With ``ax`` given, the caller owns the figure: lay it out, close it and show it once.

    Shape:
        points: ``(N, 2)``; labels and groups: ``(N,)``.

    Raises:
        ValueError: if the lengths differ or ``points`` is not ``(N, 2)``.
    """
    import matplotlib.pyplot as plt

    pts = np.asarray(points.detach().cpu() if isinstance(points, Tensor) else points)
    lab = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).astype(int)
    grp = np.zeros(len(lab), dtype=int) if groups is None else np.asarray(groups.cpu() if isinstance(groups, Tensor) else groups).astype(int)
    if pts.ndim != 2 or pts.shape[1] != 2 or not len(pts) == len(lab) == len(grp):
        raise ValueError(f"points {pts.shape}, labels ({len(lab)},) and groups ({len(grp)},) must be (N, 2), (N,), (N,).")
    from tlhelpers.core.style import finish

    created = ax is None
    if created:
        fig, ax = plt.subplots(figsize=(6.5, 5))
    fig = ax.figure
    classes = np.unique(lab)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for g in np.unique(grp):
        for i, c in enumerate(classes):
            sel = (lab == c) & (grp == g)
            if not sel.any():
                continue
            name = label_names[c] if label_names is not None else str(c)
            if groups is not None:
                name = f"{name} ({group_names[g] if group_names is not None else g})"
            ax.scatter(pts[sel, 0], pts[sel, 1], s=14, color=cmap(i % cmap.N), marker=_MARKERS[g % len(_MARKERS)], alpha=0.75, label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    if len(classes) * len(np.unique(grp)) <= 24:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, markerscale=1.5)
    return finish(fig) if created else fig
