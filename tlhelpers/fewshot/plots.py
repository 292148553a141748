"""Figures for the few-shot chapter: an episode grid, accuracy curves, method comparison, training
history, prototypes.

Every function returns a ``matplotlib.figure.Figure``, closed so that it shows nothing by itself;
the notebook displays it once as a cell's last expression. They draw in the course's house style
(``tlhelpers.core.style``): a method keeps its colour in every figure, accuracy axes carry a chance
line, short curves have markers and integer axes integer ticks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from torch import Tensor

from tlhelpers.core.style import (
    LABEL_SIZE,
    SHORT_CURVE,
    TILE_TITLE_SIZE,
    chance_line,
    finish,
    integer_ticks,
    legend_outside,
    line_style,
    method_colour,
)
from tlhelpers.fewshot.evaluation import Comparison, EvalResult
from tlhelpers.fewshot.sampler import Episode
from tlhelpers.training.engine import History


def _show(ax: plt.Axes, image: Tensor) -> None:
    img = image.detach().cpu().float()
    ax.imshow((img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_episode(episode: Episode, max_query: int = 5, class_names: Sequence[str] | None = None) -> Figure:
    """One row per class: the support images, then up to ``max_query`` query images.

    Args:
        episode: a single (unstacked) episode.
        max_query: query images shown per class.
        class_names: names indexed by the dataset's class id (``episode.classes``).
    """
    n = episode.n_way
    k = len(episode.support_y) // n
    q = min(max_query, len(episode.query_y) // n)
    # 2 inches on the left for the row labels, so the tiles keep their size and rows stay close
    fig, axes = plt.subplots(n, k + q, figsize=(1.1 * (k + q) + 2.0, 1.1 * n + 0.5), squeeze=False)
    for c in range(n):
        support = episode.support_x[episode.support_y == c]
        query = episode.query_x[episode.query_y == c][:q]
        for j, image in enumerate(list(support) + list(query)):
            _show(axes[c, j], image)
        label = class_names[int(episode.classes[c])] if class_names is not None else f"class {int(episode.classes[c])}"
        axes[c, 0].set_ylabel(f"{c}: {label}", fontsize=TILE_TITLE_SIZE, rotation=0, ha="right", va="center")
    axes[0, 0].set_title("support", fontsize=9, loc="left")
    axes[0, k].set_title("query", fontsize=9, loc="left")
    fig.suptitle(f"{n}-way {k}-shot episode (support | query)", fontsize=LABEL_SIZE)
    return finish(fig)


def plot_accuracy_curves(
    x: Sequence[float], curves: Mapping[str, Sequence[EvalResult]], xlabel: str, title: str = "", n_way: int | None = None
) -> Figure:
    """Accuracy with 95 % error bars against ``x`` (shots, inner steps...), one line per method.

    Each method keeps its course colour (``style.method_colour`` of its label), every point has a
    marker, the x axis has integer ticks, and with ``n_way`` a chance line at ``1 / n_way``.

    Args:
        x: the integer x values (numbers of shots or of inner steps).
        curves: ``{label: [EvalResult per x]}``; a curve may stop early.
        xlabel: the x-axis label.
        title: the axes title.
        n_way: classes per episode, for the chance line (None: no line).
    """
    fig, ax = plt.subplots(figsize=(6.8, 3.6))
    for label, results in curves.items():
        means = [100 * r.mean for r in results]
        errs = [100 * r.ci95 for r in results]
        style = line_style(label, points=len(results))
        ax.errorbar(list(x)[: len(results)], means, yerr=errs, capsize=3, label=label, **style)
    if n_way is not None:
        chance_line(ax, 100 / n_way, label=f"chance ({100 / n_way:.0f} %)")
    integer_ticks(ax, "x")
    if len(x) <= SHORT_CURVE:  # few values (shots 1, 3, 5): a tick at each, none in between
        ax.set_xticks(list(x))
    ax.set_ylim(0, 103)
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel("query accuracy (%)", fontsize=LABEL_SIZE)
    ax.set_title(title, fontsize=LABEL_SIZE)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return finish(fig)


def plot_method_comparison(table: Comparison, n_way: int, title: str = "") -> Figure:
    """Accuracy with 95 % error bars of every method at every number of shots, on shared episodes.

    One group of bars per number of shots, one colour per method, the
    value printed above each bar, and a dotted chance line at ``1 / n_way``. A method has the
    same colour as in every other figure of the course (``style.method_colour``).

    Args:
        table: ``{method: {k_shot: EvalResult}}`` (``evaluation.compare_methods`` or
            ``evaluation.comparison_from_reports``).
        n_way: classes per episode, for the chance line.
        title: the axes title.

    Raises:
        ValueError: if the table is empty.
    """
    if not table or not any(table.values()):
        raise ValueError("the comparison table is empty; pass {method: {k_shot: EvalResult}}.")
    shots = sorted({k for row in table.values() for k in row})
    methods = list(table)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(methods) * len(shots), 3.8))
    for i, name in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j, k in enumerate(shots) if k in table[name]]
        results = [table[name][k] for k in shots if k in table[name]]
        means = [100 * r.mean for r in results]
        bars = ax.bar(
            xs, means, width, yerr=[100 * r.ci95 for r in results], capsize=3, color=method_colour(name),
            edgecolor="black", linewidth=0.5, label=name,
        )
        ax.bar_label(bars, labels=[f"{m:.0f}" for m in means], padding=2, fontsize=7)
    chance_line(ax, 100 / n_way, label=f"chance ({100 / n_way:.0f} %)")
    ax.set_xticks(range(len(shots)), [f"{k}-shot" for k in shots])
    ax.set_ylim(0, 108)
    ax.set_ylabel(f"{n_way}-way query accuracy (%)", fontsize=LABEL_SIZE)
    ax.set_title(title, fontsize=LABEL_SIZE)
    ax.grid(axis="y", alpha=0.3)
    legend_outside(ax)
    return finish(fig)


def plot_meta_history(histories: Mapping[str, History], n_way: int | None = None) -> Figure:
    """Training loss and train/validation accuracy against meta-iterations, one colour per run.

    A run keeps its method's course colour; training curves are dashed and validation curves
    solid, short curves get markers, and with ``n_way`` the accuracy panel has a chance line.

    Args:
        histories: ``{method: History}`` with ``step``, ``train_loss``, ``train_acc`` and
            optionally ``val_acc`` columns (``training.meta_train``).
        n_way: classes per episode, for the chance line (None: no line).
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.5))
    for label, history in histories.items():
        its = history["step"]
        ax_loss.plot(its, history["train_loss"], label=f"{label} train", **line_style(label, "train", len(its)))
        ax_acc.plot(its, history["train_acc"], label=f"{label} train", **line_style(label, "train", len(its)))
        if "val_acc" in history.keys:
            val_its = [i for i, v in zip(its, history["val_acc"]) if v is not None and v == v]
            val = [v for v in history["val_acc"] if v is not None and v == v]
            ax_acc.plot(val_its, val, label=f"{label} val", **line_style(label, "val", len(val)))
    if n_way is not None:
        chance_line(ax_acc, 1 / n_way, label=f"chance ({1 / n_way:.2f})")
    for ax, name in ((ax_loss, "training loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("meta-iteration", fontsize=LABEL_SIZE)
        ax.set_ylabel(name, fontsize=LABEL_SIZE)
        integer_ticks(ax, "x")
        ax.grid(alpha=0.3)
        ax.set_xlim(left=0)
    ax_acc.set_ylim(0, 1.02)
    legend_outside(ax_acc)
    return finish(fig)


def plot_prototype_projection(support_emb: Tensor, support_y: Tensor, query_emb: Tensor, query_y: Tensor, protos: Tensor) -> Figure:
    """PCA of one episode's embeddings: queries (dots), support (crosses) and prototypes (stars).

    Shape:
        support_emb: ``(N*K, D)``; query_emb: ``(N*Q, D)``; protos: ``(N, D)``.
    """
    all_emb = torch.cat([support_emb, query_emb, protos]).detach().cpu().double().numpy()
    xy = PCA(n_components=2).fit_transform(all_emb)
    s, q = len(support_emb), len(query_emb)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for c in range(len(protos)):
        colour = f"C{c % 10}"
        qm = np.flatnonzero(query_y.cpu().numpy() == c)
        sm = np.flatnonzero(support_y.cpu().numpy() == c)
        ax.scatter(xy[s + qm, 0], xy[s + qm, 1], s=12, alpha=0.5, color=colour)
        ax.scatter(xy[sm, 0], xy[sm, 1], marker="x", s=40, color=colour)
        ax.scatter(xy[s + q + c, 0], xy[s + q + c, 1], marker="*", s=300, color=colour, edgecolor="black", label=f"class {c}")
    ax.set_title("prototypes (stars), support (x), queries (dots); PCA", fontsize=LABEL_SIZE)
    ax.set_xlabel("PC 1", fontsize=LABEL_SIZE)
    ax.set_ylabel("PC 2", fontsize=LABEL_SIZE)
    legend_outside(ax, markerscale=0.5)
    return finish(fig)
