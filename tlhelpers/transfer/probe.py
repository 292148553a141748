"""Probes: small classifiers trained on cached features, in seconds.

A *linear probe* measures how much of the class information a frozen layer already makes
linearly separable. ``train_linear_probe`` trains a linear (or small MLP) head with the course's
``fit`` on features held in memory; ``sklearn_probe`` fits scikit-learn's ``LogisticRegression``
on the same features as an independent cross-check.

Speed: ten epochs of a linear head on a few hundred rows take tens of milliseconds on one CPU
thread. Two costs can hide that: several threads fighting over shared cores for microsecond-sized
products (probes train on one thread, see :func:`cpu_threads`), and the first optimizer built in
a process, which imports torch's compiler stack once (about a second; later probes skip it).

Example:
    >>> result = train_linear_probe(train_feats, train_labels, val_feats, val_labels, num_epochs=20)
    >>> result.history["val_acc"][-1], sklearn_probe(train_feats, train_labels, val_feats, val_labels)["acc"]
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from tlhelpers.core.runtime import get_device
from tlhelpers.training.engine import History, evaluate, fit

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_HEADS = ("linear", "mlp")


def _check_pair(features: Tensor, labels: Tensor) -> None:
    if features.ndim != 2:
        raise ValueError(f"features have shape {tuple(features.shape)}, expected (N, D); flatten or pool them first.")
    if labels.shape != (len(features),):
        raise ValueError(f"{len(features)} feature rows but labels of shape {tuple(labels.shape)}; pass one label per row.")


class FeatureLoader:
    """Batches ``(features[idx], labels[idx])`` sliced straight from tensors: no per-item Python work.

    Args:
        features: one row per example.
        labels: one class index per row.
        batch_size: rows per batch (the last batch may be smaller).
        shuffle: draw a new permutation every epoch.
        seed: seed of the permutation stream, so runs repeat; :meth:`state_dict` saves the stream's
            position, so a resumed run draws the permutations an uninterrupted one would.

    Shape:
        features: ``(N, D)``; labels: ``(N,)``.

    Raises:
        ValueError: on mismatched shapes or a batch size below 1.
    """

    def __init__(self, features: Tensor, labels: Tensor, batch_size: int = 256, shuffle: bool = False, seed: int = 0) -> None:
        _check_pair(features, labels)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1.")
        self.features, self.labels = features.float(), labels.long()
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def state_dict(self) -> dict[str, Tensor]:
        """The permutation stream's position: ``{"generator": its state}``."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Continue the permutation stream from a :meth:`state_dict`."""
        self.generator.set_state(state["generator"].cpu())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.features[idx], self.labels[idx]


@contextmanager
def cpu_threads(n: int | None, device: torch.device) -> Iterator[None]:
    """Use ``n`` intra-op CPU threads inside the block (nothing changes on a GPU or when ``n`` is None).

    A linear head on a few hundred rows does matrix products of a few microseconds, too small to
    split across threads: extra threads only add synchronisation, and on a CPU shared with other
    work each step can wait milliseconds for a busy core. One thread is the fast choice for probes.
    """
    before = torch.get_num_threads()
    if n is None or device.type != "cpu" or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Standardize(nn.Module):
    """Subtract a fixed per-feature mean and divide by the std (stored as buffers, not trained).

    A feature that (almost) never varies on the training rows, such as a ReLU unit silent on every
    training image, keeps the scale 1 (as scikit-learn's ``StandardScaler`` does for constant
    features): dividing by its tiny std would turn any nonzero value on new images into a huge
    input (a z-score of 80,000 for VGG features of 300 images) and the loss on them into nonsense.
    """

    mean: Tensor  # buffers, registered in __init__
    std: Tensor

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        std = std.float()
        tiny = std <= 1e-3 * std.max().clamp_min(1e-12)
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", torch.where(tiny, torch.ones_like(std), std))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def make_head(in_features: int, num_classes: int, kind: str = "linear", hidden: int = 256, dropout: float = 0.2) -> nn.Module:
    """A classifier head on feature vectors: ``"linear"`` or a one-hidden-layer ``"mlp"``.

    Raises:
        ValueError: for an unknown ``kind``.
    """
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
    raise ValueError(f"head kind {kind!r} is unknown; use one of {_HEADS}.")


@dataclass
class ProbeResult:
    """A trained probe: ``model`` maps raw features to logits (standardization included)."""

    model: nn.Module
    history: History
    seconds: float
    val_acc: float | None


def train_linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    val_features: Tensor | None = None,
    val_labels: Tensor | None = None,
    *,
    head: str = "linear",
    num_classes: int | None = None,
    hidden: int = 256,
    num_epochs: int = 30,
    lr: float = 5e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    standardize: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
    threads: int | None = 1,
) -> ProbeResult:
    """Train a head on fixed features with :func:`tlhelpers.training.engine.fit` (AdamW, cosine schedule).

    Args:
        train_features: training features; standardized with their own mean and std when
            ``standardize`` (the statistics become part of the returned model).
        train_labels: class indices.
        val_features: optional validation features, evaluated after every epoch.
        val_labels: labels of ``val_features``.
        head: ``"linear"`` or ``"mlp"``.
        num_classes: number of classes; ``max(label) + 1`` when None.
        hidden: MLP width.
        num_epochs: epochs over the training features.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: rows per step.
        standardize: prepend a fixed standardization layer.
        seed: seeds the head's initialization and the batch order.
        device: see :func:`tlhelpers.core.runtime.get_device`.
        progress: show progress bars.
        threads: CPU threads while training (see :func:`cpu_threads`); None keeps torch's setting.

    Returns:
        A :class:`ProbeResult` with the model, its history, the training time and final val accuracy.

    Shape:
        train_features: ``(N, D)``; train_labels: ``(N,)``.

    Raises:
        ValueError: on mismatched shapes, an unknown head, or val features without labels.
    """
    from tlhelpers.training.schedules import warmup_cosine

    _check_pair(train_features, train_labels)
    if (val_features is None) != (val_labels is None):
        raise ValueError("pass both val_features and val_labels, or neither.")
    n_cls = int(num_classes if num_classes is not None else int(train_labels.max()) + 1)
    torch.manual_seed(seed)
    x = train_features.float()
    layers: list[nn.Module] = [Standardize(x.mean(0), x.std(0))] if standardize else []
    model = nn.Sequential(*layers, make_head(x.shape[1], n_cls, head, hidden))
    train_loader = FeatureLoader(x, train_labels, batch_size, shuffle=True, seed=seed)
    val_loader = FeatureLoader(val_features, val_labels, 1024) if val_features is not None and val_labels is not None else None
    dev = get_device(device)
    t0 = time.perf_counter()
    with cpu_threads(threads, dev):
        history = fit(
            model, train_loader, num_epochs, lr=lr, weight_decay=weight_decay, scheduler=warmup_cosine,
            val_loader=val_loader, device=dev, progress=progress, desc=f"{head} probe",
        )
    seconds = time.perf_counter() - t0
    val_acc = history["val_acc"][-1] if val_loader is not None else None
    return ProbeResult(model.cpu().eval(), history, seconds, val_acc)


def probe_accuracy(model: nn.Module, features: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy of a probe on features (CPU)."""
    with cpu_threads(1, torch.device("cpu")):
        return evaluate(model, FeatureLoader(features, labels, 1024), device="cpu")["acc"]


def sklearn_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    C: float = 1.0,
    max_iter: int = 2000,
) -> dict[str, Any]:
    """Standardize + multinomial ``LogisticRegression`` (L-BFGS), the classic linear probe.

    Returns:
        ``{"acc": test accuracy, "train_acc": ..., "seconds": fit time, "model": the fitted pipeline}``.

    Raises:
        ValueError: on mismatched shapes.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    _check_pair(train_features, train_labels)
    _check_pair(test_features, test_labels)
    xtr, ytr = train_features.float().numpy(), train_labels.numpy()
    t0 = time.perf_counter()
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with threadpool_limits(1):  # small BLAS calls: one thread, as for our probes (see cpu_threads)
        clf.fit(xtr, ytr)
    seconds = time.perf_counter() - t0
    return {
        "acc": float(clf.score(test_features.float().numpy(), test_labels.numpy())),
        "train_acc": float(clf.score(xtr, ytr)),
        "seconds": seconds,
        "model": clf,
    }


def plot_layer_probes(
    rows: Sequence[Mapping[str, Any]],
    layers: Sequence[str],
    *,
    chance: float | None = None,
    metric: str = "test_acc",
    title: str | None = None,
) -> Figure:
    """Probe accuracy per layer: one colour per target, solid for pretrained and dashed for random weights.

    Args:
        rows: one dict per probe with ``"layer"``, ``"target"``, ``"weights"`` (``"pretrained"`` or
            ``"random"``) and ``metric``.
        layers: the x axis, shallow to deep.
        chance: draws a grey chance line when given.
        metric: the key of the accuracy in each row.
        title: axes title.

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: if a row lacks a key or names a layer not in ``layers``.
    """
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import LABEL_SIZE, chance_line, finish, legend_outside, method_colour

    for row in rows:
        missing = [k for k in ("layer", "target", "weights", metric) if k not in row]
        if missing or row["layer"] not in layers:
            raise ValueError(f"row {dict(row)} needs keys layer, target, weights, {metric} and a layer from {list(layers)}.")
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    targets = list(dict.fromkeys(row["target"] for row in rows))
    for target in targets:
        for weights in dict.fromkeys(row["weights"] for row in rows if row["target"] == target):
            acc = {row["layer"]: row[metric] for row in rows if row["target"] == target and row["weights"] == weights}
            xs = [j for j, layer in enumerate(layers) if layer in acc]
            ax.plot(xs, [acc[layers[j]] for j in xs], marker="o", color=method_colour(target),
                    linestyle="-" if weights == "pretrained" else "--", label=f"{target}, {weights}")
    if chance is not None:
        chance_line(ax, chance)
    ax.set_xticks(range(len(layers)), list(layers))
    ax.set_xlabel("layer (shallow to deep)", fontsize=LABEL_SIZE)
    ax.set_ylabel("probe accuracy", fontsize=LABEL_SIZE)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    legend_outside(ax)
    return finish(fig)


def plot_probe_curves(
    histories: Mapping[str, History],
    *,
    chance: float | None = None,
    eval_name: str = "validation",
    log_loss: bool = False,
) -> Figure:
    """Loss and accuracy per epoch of several probes: a colour per probe, training dashed, evaluation solid.

    Args:
        histories: probe name (e.g. ``"linear probe"``, ``"MLP head"``) to its ``History`` with
            ``train_loss``, ``train_acc`` and, when evaluated, ``val_loss``, ``val_acc``.
        chance: draws the chance line on the accuracy axes when given.
        eval_name: what the ``val_*`` curves were measured on, for the legend (e.g. ``"test"``).
        log_loss: a logarithmic loss axis.

    Returns:
        The figure (closed: show it once, as a cell's value).

    Raises:
        ValueError: if ``histories`` is empty or a history has no ``train_loss``.
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

    if not histories:
        raise ValueError("pass at least one history, e.g. {'linear probe': result.history}.")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    splits = {"train": "train", "val": eval_name}
    for name, history in histories.items():
        if "train_loss" not in history.keys:
            raise ValueError(f"history {name!r} has no train_loss; pass the History that fit returned.")
        epochs = history["epoch"] if "epoch" in history.keys else list(range(1, len(history) + 1))
        for ax, kind in zip(axes, ("loss", "acc"), strict=True):
            for split, split_name in splits.items():
                if f"{split}_{kind}" in history.keys:
                    ax.plot(epochs, history[f"{split}_{kind}"], label=f"{name}, {split_name}",
                            **line_style(name, split=split, points=len(epochs)))
    for ax, kind in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch", fontsize=LABEL_SIZE)
        ax.set_ylabel(kind, fontsize=LABEL_SIZE)
        ax.grid(alpha=0.3)
        integer_ticks(ax, "x")
    if log_loss:
        axes[0].set_yscale("log")
    if chance is not None:
        chance_line(axes[1], chance)
    legend_outside(axes[1])
    return finish(fig)
