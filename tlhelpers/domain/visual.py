"""Features and figures for the chapter: embeddings by domain and class, sample grids, DANN curves.

The 2-D embedding itself is :func:`tlhelpers.transfer.projection.embed_2d` (t-SNE or PCA), shared with
chapters 2 and 4.

Plotting functions return a closed matplotlib ``Figure`` (house style, :mod:`tlhelpers.core.style`): a
notebook shows it once, as a cell's value.

Example:
    >>> feats, labels = feature_vectors(model, loader)
    >>> fig = plot_training_signals({"DANN": history})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from tlhelpers.core.runtime import get_device
from tlhelpers.models.api import forward_features
from tlhelpers.training.engine import History, to_device

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@torch.inference_mode()
def feature_vectors(
    model: nn.Module, loader: Iterable[Any], *, device: str | torch.device | None = None
) -> tuple[Tensor, Tensor | None]:
    """``model.forward_features`` over a loader of ``(x, y)`` or ``x`` batches, in eval mode.

    Through :func:`tlhelpers.models.api.forward_features`: a model without the method gives its head's input.

    Returns:
        ``(features, labels)`` on the CPU; ``labels`` is None when the loader yields images only.

    Shape:
        ``(N, feature_dim)`` and ``(N,)``.
    """
    dev = get_device(device)
    model.to(dev).eval()
    feats, labels = [], []
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        feats.append(forward_features(model, to_device(x, dev)).float().cpu())
        if isinstance(batch, (tuple, list)):
            labels.append(torch.as_tensor(batch[1]))
    return torch.cat(feats), (torch.cat(labels) if labels else None)


def plot_domain_embedding(
    points: np.ndarray,
    is_target: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    title: str = "",
    class_names: Sequence[str] | None = None,
    note: str = "",
) -> Figure:
    """Two scatter panels of 2-D points: coloured by domain (left) and by class (right).

    Source points are dots, target points crosses, in both panels; each panel has a legend outside
    the data (the class legend names every class, ``class_names`` or the label numbers).

    Args:
        points: the 2-D embedding, source and target rows together.
        is_target: 1 for target rows, 0 for source rows.
        labels: class index of each row (colours only).
        title: the start of both panel titles (e.g. the method).
        class_names: legend names of the classes.
        note: a line above both panels (e.g. a measured alignment number).

    Returns:
        The figure (closed: show it once, as a cell's value).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from tlhelpers.core.style import finish, legend_outside, method_colour

    pts, dom, lab = np.asarray(points), np.asarray(is_target).astype(bool), np.asarray(labels).astype(int)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    cmap = plt.get_cmap("tab10" if lab.max(initial=0) < 10 else "tab20")
    for mask, marker, name in ((~dom, "o", "source"), (dom, "x", "target")):
        axes[0].scatter(*pts[mask].T, s=10, marker=marker, color=method_colour(name), alpha=0.6, label=name)
        axes[1].scatter(*pts[mask].T, s=10, marker=marker, color=cmap(lab[mask] % cmap.N), alpha=0.7)
    legend_outside(axes[0], markerscale=2, title="domain")
    classes = sorted(set(lab.tolist()))
    names = [str(class_names[c]) if class_names is not None else str(c) for c in classes]
    handles = [Line2D([], [], ls="", marker="s", color=cmap(c % cmap.N), label=nm) for c, nm in zip(classes, names, strict=True)]
    handles += [Line2D([], [], ls="", marker=m, color="grey", label=d) for m, d in (("o", "source"), ("x", "target"))]
    legend_outside(axes[1], handles=handles, title="class")
    axes[0].set_title(f"{title} - by domain".strip(" -"))
    axes[1].set_title(f"{title} - by class".strip(" -"))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if note:
        fig.suptitle(note, fontsize=10)
    return finish(fig)


def plot_sample_grid(source: Any, target: Any, n: int = 10, names: tuple[str, str] = ("source", "target")) -> Figure:
    """The first ``n`` images of two datasets of ``(image, label)`` items, one row per domain (closed figure)."""
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import TILE_TITLE_SIZE, finish

    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.8), squeeze=False)
    for row, (ds, name) in enumerate(zip((source, target), names, strict=True)):
        for col in range(n):
            x, y = ds[col]
            axes[row, col].imshow(x.permute(1, 2, 0).clamp(0, 1).numpy())
            axes[row, col].set_title(str(y), fontsize=TILE_TITLE_SIZE)
            axes[row, col].axis("off")
        axes[row, 0].text(-0.3, 0.5, name, transform=axes[row, 0].transAxes, ha="right", va="center")
    return finish(fig)


def plot_training_signals(histories: Mapping[str, History]) -> Figure:
    """Domain-classifier accuracy (with the 0.5 chance line) and ``lambda`` per epoch, per run.

    A colour per run (:func:`tlhelpers.core.style.method_colour`), whole-number epochs, one legend
    outside the data.

    Returns:
        The figure (closed: show it once, as a cell's value).
    """
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import (
        LABEL_SIZE,
        chance_line,
        finish,
        integer_ticks,
        legend_outside,
        line_style,
    )

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name, hist in histories.items():
        epochs = hist["epoch"]
        style = line_style(name, split="val", points=len(epochs))
        if "domain_acc" in hist.keys:
            axes[0].plot(epochs, hist["domain_acc"], label=name, **style)
        if "lambda" in hist.keys:
            axes[1].plot(epochs, hist["lambda"], label=name, **style)
    chance_line(axes[0], 0.5)
    axes[0].set_ylim(0.3, 1.02)
    axes[0].set_ylabel("domain classifier accuracy", fontsize=LABEL_SIZE)
    axes[1].set_ylabel("lambda (mean over the epoch)", fontsize=LABEL_SIZE)
    for ax in axes:
        ax.set_xlabel("epoch", fontsize=LABEL_SIZE)
        ax.grid(alpha=0.3)
        integer_ticks(ax, "x")
    legend_outside(axes[1], handles=axes[0].get_legend_handles_labels()[0])
    return finish(fig)
