"""Where a classifier goes wrong: its most costly mistakes (top losses) and its confusion matrix.

:func:`top_losses` runs the model once over a dataset (in eval mode, through
:func:`tlhelpers.training.engine.predict`) and keeps the ``k`` samples with the highest
cross-entropy; :func:`plot_top_losses` shows them with fastai's "prediction/actual/loss/probability"
titles. :func:`confusion` counts true against predicted classes with scikit-learn, and
:func:`plot_confusion_matrix` draws it legibly even for 37 classes. For the most-confused class pairs
as a list, see :func:`tlhelpers.course.inspection.most_confused`.

Example:
    >>> top = top_losses(model, test_set, k=9)
    >>> fig = plot_top_losses(top, test_set, test_set.classes, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    >>> logits, labels = predict(model, test_loader)
    >>> fig = plot_confusion_matrix(confusion(logits, labels, 37), test_set.classes)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler

from tlhelpers.training.engine import predict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Above this many classes the confusion matrix shows colours only, without the numbers in the cells.
MAX_CLASSES_WITH_VALUES = 12


@dataclass
class TopLosses:
    """The samples with the highest loss, highest first (what :func:`top_losses` returns).

    Attributes:
        indices: positions in the dataset (``dataset[i]``), shape ``(k,)``.
        losses: their cross-entropy, shape ``(k,)``, in decreasing order.
        predicted: the predicted class (the arg-max), shape ``(k,)``.
        actual: the true class, shape ``(k,)``.
        probability: the softmax probability of the predicted class, shape ``(k,)``.
    """

    indices: Tensor
    losses: Tensor
    predicted: Tensor
    actual: Tensor
    probability: Tensor

    def __len__(self) -> int:
        return len(self.indices)


def _as_loader(data: Any, batch_size: int) -> DataLoader:
    if not isinstance(data, DataLoader):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data.sampler, RandomSampler) or isinstance(getattr(data.batch_sampler, "sampler", None), RandomSampler):
        raise ValueError("the loader shuffles, so positions are not dataset indices; pass the dataset or a loader with "
                         "shuffle=False.")
    return data


def top_losses(
    model: nn.Module, dataset_or_loader: Any, k: int = 9, device: str | torch.device | None = None, *, batch_size: int = 256
) -> TopLosses:
    """The ``k`` samples the model gets most wrong (highest cross-entropy), from one eval pass.

    Args:
        model: the classifier; it is moved to ``device`` (as :func:`~tlhelpers.training.engine.predict`
            does) and each module's train/eval mode is restored afterwards.
        dataset_or_loader: a dataset of ``(image, label)`` pairs, or a ``DataLoader`` over one that
            does not shuffle (its order gives the indices).
        k: how many to keep; a ``k`` larger than the dataset is clipped to its size (all samples,
            sorted).
        device: where to run; None picks one (:func:`tlhelpers.core.runtime.get_device`).
        batch_size: batch size when a dataset is given.

    Returns:
        A :class:`TopLosses` of ``min(k, len(dataset))`` samples, highest loss first (ties in dataset order).

    Raises:
        ValueError: if ``k < 1``, or the loader shuffles.
    """
    if k < 1:
        raise ValueError(f"k={k} must be at least 1; ask for k=9 to fill a 3x3 grid.")
    loader = _as_loader(dataset_or_loader, batch_size)
    modes = [(m, m.training) for m in model.modules()]
    try:
        logits, labels = predict(model, loader, device=device)
    finally:
        for m, training in modes:
            m.training = training
    labels = labels.long()
    losses = F.cross_entropy(logits, labels, reduction="none")
    order = torch.sort(losses, descending=True, stable=True).indices[:k]
    probability, predicted = logits[order].softmax(1).max(1)
    return TopLosses(order, losses[order], predicted, labels[order], probability)


def _image(item: Any) -> Tensor:
    if isinstance(item, Tensor):
        return item
    from torchvision.transforms.v2.functional import to_image

    return to_image(item)  # a PIL image or an array


def plot_top_losses(
    top: TopLosses,
    dataset: Any,
    class_names: Sequence[str],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    ncols: int = 3,
) -> Figure:
    """The top-loss images, each titled fastai's way: "prediction/actual" then "loss/probability".

    Args:
        top: from :func:`top_losses` on this ``dataset``.
        dataset: the dataset whose ``dataset[i][0]`` are the images.
        class_names: names indexed by class.
        mean: the normalisation's per-channel mean, to undo it for display.
        std: the normalisation's per-channel standard deviation.
        ncols: images per row.

    Returns:
        The closed figure, with one axes per image.
    """
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import TILE_TITLE_SIZE, finish
    from tlhelpers.course.inspection import RIGHT_COLOUR, WRONG_COLOUR
    from tlhelpers.transfer.gradcam import for_display

    n = len(top)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 2.5 * nrows + 0.4), squeeze=False)
    for ax in axes.flat[n:]:
        fig.delaxes(ax)
    for ax, i, loss, pred, actual, prob in zip(axes.flat, top.indices.tolist(), top.losses.tolist(),
                                               top.predicted.tolist(), top.actual.tolist(), top.probability.tolist()):
        img = for_display(_image(dataset[i][0]), mean, std)
        ax.imshow((img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(top_loss_title(class_names[pred], class_names[actual], loss, prob), fontsize=TILE_TITLE_SIZE,
                     color=RIGHT_COLOUR if pred == actual else WRONG_COLOUR)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("prediction/actual/loss/probability")
    return finish(fig)


def top_loss_title(predicted: str, actual: str, loss: float, probability: float) -> str:
    """The title of one image of :func:`plot_top_losses`: ``"pred/actual\\nloss/prob"``, e.g. ``"cat/dog\\n2.31/0.87"``."""
    return f"{predicted}/{actual}\n{loss:.2f}/{probability:.2f}"


def confusion(
    logits_or_preds: Tensor | np.ndarray, labels: Tensor | np.ndarray, num_classes: int, *, normalize: bool = False
) -> np.ndarray:
    """The confusion matrix: ``cm[t, p]`` counts samples of true class ``t`` predicted as ``p``.

    Args:
        logits_or_preds: ``(N, num_classes)`` scores (their arg-max is the prediction) or ``(N,)`` predicted classes.
        labels: ``(N,)`` true classes.
        num_classes: the number of classes (classes never seen still get a row and a column).
        normalize: divide each row by its total, so a row gives the share of that class predicted as each
            class (rows of classes without samples stay zero).

    Returns:
        ``(num_classes, num_classes)`` int64 counts, or float64 shares when ``normalize``.

    Raises:
        ValueError: if the scores' width is not ``num_classes``, a class is out of range, or the lengths differ.
    """
    scores = np.asarray(logits_or_preds.detach().cpu() if isinstance(logits_or_preds, Tensor) else logits_or_preds)
    truth = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels).astype(np.int64).reshape(-1)
    if scores.ndim == 2:
        if scores.shape[1] != num_classes:
            raise ValueError(f"scores have {scores.shape[1]} columns but num_classes={num_classes}; pass the model's "
                             "number of classes.")
        scores = scores.argmax(1)
    preds = scores.astype(np.int64).reshape(-1)
    if len(preds) != len(truth):
        raise ValueError(f"{len(preds)} predictions for {len(truth)} labels; pass both for the same samples.")
    both = np.concatenate([preds, truth])
    if both.size and (both.min() < 0 or both.max() >= num_classes):
        raise ValueError(f"a class index lies outside 0..{num_classes - 1}; check num_classes={num_classes}.")
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(truth, preds, labels=np.arange(num_classes))
    return normalize_rows(cm) if normalize else cm


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Each row of a confusion matrix divided by its total (rows that sum to zero stay zero)."""
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], normalize: bool = True) -> Figure:
    """The confusion matrix as a heat map (scikit-learn's ``ConfusionMatrixDisplay``), true classes as rows.

    With more than :data:`MAX_CLASSES_WITH_VALUES` classes the cells show colour only, and the
    tick labels get smaller and vertical, so 37 breeds stay readable.

    Args:
        cm: counts from :func:`confusion`, ``(C, C)``.
        class_names: the ``C`` class names.
        normalize: show each row as shares of the class (rows sum to 1) rather than counts.

    Returns:
        The closed figure: the matrix axes and its colour bar.

    Raises:
        ValueError: if ``cm`` is not square or does not match ``class_names``.
    """
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    from tlhelpers.core.style import LABEL_SIZE, finish

    cm = np.asarray(cm)
    c = len(class_names)
    if cm.shape != (c, c):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {c} class names; pass a ({c}, {c}) matrix.")
    values = normalize_rows(cm) if normalize else cm
    few = c <= MAX_CLASSES_WITH_VALUES
    side = max(4.5, 0.22 * c + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    display = ConfusionMatrixDisplay(confusion_matrix=values, display_labels=list(class_names))
    fmt = ".2f" if normalize or not np.issubdtype(values.dtype, np.integer) else "d"
    display.plot(ax=ax, include_values=few, cmap="Blues", xticks_rotation=45 if few else 90, values_format=fmt,
                 colorbar=True)
    if normalize:
        display.im_.set_clim(0, 1)
    if few and display.text_ is not None:
        for text in display.text_.ravel():
            text.set_fontsize(8)
    ax.tick_params(labelsize=8 if few else 6)
    ax.set_xlabel("predicted class", fontsize=LABEL_SIZE)
    ax.set_ylabel("true class", fontsize=LABEL_SIZE)
    ax.set_title("confusion matrix (each row sums to 1)" if normalize else "confusion matrix (counts)")
    return finish(fig)


__all__ = [
    "MAX_CLASSES_WITH_VALUES", "TopLosses", "confusion", "normalize_rows", "plot_confusion_matrix", "top_loss_title",
    "plot_top_losses", "top_losses",
]
