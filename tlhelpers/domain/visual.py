"""Features and figures for the chapter: embeddings by domain and class, sample grids, DANN curves.

The 2-D embedding itself is :func:`tlhelpers.projection.embed_2d` (t-SNE or PCA), shared with
chapters 2 and 4.

Plotting functions return a matplotlib ``Figure`` and never call ``plt.show()``.

Example:
    >>> feats, labels = feature_vectors(model, loader)
    >>> fig = plot_training_signals({"DANN": history})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tlhelpers.engine import History, to_device
from tlhelpers.runtime import get_device


@torch.inference_mode()
def feature_vectors(
    model: nn.Module, loader: Iterable[Any], *, device: str | torch.device | None = None
) -> tuple[Tensor, Tensor | None]:
    """``model.forward_features`` over a loader of ``(x, y)`` or ``x`` batches, in eval mode.

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
        feats.append(model.forward_features(to_device(x, dev)).float().cpu())
        if isinstance(batch, (tuple, list)):
            labels.append(torch.as_tensor(batch[1]))
    return torch.cat(feats), (torch.cat(labels) if labels else None)


def plot_domain_embedding(
    points: np.ndarray,
    is_target: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    title: str = "",
    class_names: Sequence[str] | None = None,
) -> Any:
    """Two scatter panels of 2-D points: coloured by domain (left) and by class (right).

    Source points are dots, target points crosses, in both panels; each panel has a legend (the
    class legend names every class, ``class_names`` or the label numbers).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    pts, dom, lab = np.asarray(points), np.asarray(is_target).astype(bool), np.asarray(labels)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for mask, marker, name, colour in ((~dom, "o", "source", "tab:blue"), (dom, "x", "target", "tab:orange")):
        axes[0].scatter(*pts[mask].T, s=8, marker=marker, c=colour, alpha=0.6, label=name)
        axes[1].scatter(*pts[mask].T, s=8, marker=marker, c=lab[mask], cmap="tab10", vmin=0, vmax=9, alpha=0.7)
    axes[0].legend(markerscale=2, fontsize=8)
    cmap = plt.get_cmap("tab10")
    classes = sorted(set(lab.tolist()))
    names = [str(class_names[c]) if class_names is not None else str(c) for c in classes]
    handles = [Line2D([], [], ls="", marker="s", color=cmap(c % 10), label=nm) for c, nm in zip(classes, names, strict=True)]
    handles += [Line2D([], [], ls="", marker=m, color="grey", label=d) for m, d in (("o", "source"), ("x", "target"))]
    axes[1].legend(handles=handles, fontsize=8, title="class", loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes[0].set_title(f"{title} - by domain".strip(" -"))
    axes[1].set_title(f"{title} - by class".strip(" -"))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_sample_grid(source: Any, target: Any, n: int = 10, names: tuple[str, str] = ("source", "target")) -> Any:
    """The first ``n`` images of two datasets of ``(image, label)`` items, one row per domain."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.6), squeeze=False)
    for row, (ds, name) in enumerate(zip((source, target), names, strict=True)):
        for col in range(n):
            x, y = ds[col]
            axes[row, col].imshow(x.permute(1, 2, 0).clamp(0, 1).numpy())
            axes[row, col].set_title(str(y), fontsize=8)
            axes[row, col].axis("off")
        axes[row, 0].text(-0.3, 0.5, name, transform=axes[row, 0].transAxes, ha="right", va="center")
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_training_signals(histories: Mapping[str, History]) -> Any:
    """Domain-classifier accuracy (with the 0.5 chance line) and ``lambda`` per epoch, per run."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, hist in histories.items():
        epochs = hist["epoch"]
        if "domain_acc" in hist.keys:
            axes[0].plot(epochs, hist["domain_acc"], marker="o", ms=3, label=name)
        if "lambda" in hist.keys:
            axes[1].plot(epochs, hist["lambda"], marker="o", ms=3, label=name)
    axes[0].axhline(0.5, color="grey", ls="--", lw=1, label="chance")
    axes[0].set_ylim(0.3, 1.02)
    axes[0].set_ylabel("domain classifier accuracy")
    axes[1].set_ylabel("lambda (mean over the epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig
