"""Top losses against a per-sample cross-entropy computed here, and the confusion matrix against hand counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers.course.diagnostics import (
    confusion,
    normalize_rows,
    plot_confusion_matrix,
    plot_top_losses,
    top_loss_title,
    top_losses,
)

CLASSES = ["cat", "dog", "fox", "owl"]


def _data(n: int = 10) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 4, (n,), generator=g))


def _model() -> nn.Module:
    torch.manual_seed(0)  # dropout makes train mode differ from the eval pass top_losses must make
    return nn.Sequential(nn.Flatten(), nn.Linear(108, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))


def _reference(model: nn.Module, data: TensorDataset):
    x, y = data.tensors
    model.eval()
    with torch.no_grad():
        logits = model(x)
    losses = torch.stack([-torch.log_softmax(row, 0)[t] for row, t in zip(logits, y)])  # one sample at a time
    order = sorted(range(len(y)), key=lambda i: -losses[i].item())
    probs = logits.softmax(1)
    return order, losses, logits.argmax(1), y, probs


def test_top_losses_equal_sorted_per_sample_cross_entropy():
    data, model = _data(), _model()
    order, losses, preds, labels, probs = _reference(model, data)
    model.train()
    top = top_losses(model, data, k=4, device="cpu")
    assert model.training and model[3].training  # the mode is as before
    assert top.indices.tolist() == order[:4]
    assert torch.allclose(top.losses, losses[order[:4]], atol=1e-6)
    assert top.predicted.tolist() == preds[order[:4]].tolist()
    assert top.actual.tolist() == labels[order[:4]].tolist()
    assert torch.allclose(top.probability, probs[order[:4], preds[order[:4]]], atol=1e-6)


def test_a_loader_without_shuffling_gives_the_same_indices():
    data, model = _data(), _model()
    by_dataset = top_losses(model, data, k=5, device="cpu")
    by_loader = top_losses(model, DataLoader(data, batch_size=3), k=5, device="cpu")
    assert by_loader.indices.tolist() == by_dataset.indices.tolist()
    with pytest.raises(ValueError, match="shuffles"):
        top_losses(model, DataLoader(data, batch_size=3, shuffle=True), device="cpu")


def test_k_larger_than_the_dataset_is_clipped_and_k_below_one_raises():
    data, model = _data(6), _model()
    order, losses, *_ = _reference(model, data)
    top = top_losses(model, data, k=50, device="cpu")
    assert len(top) == 6
    assert top.indices.tolist() == order
    assert torch.all(top.losses[:-1] >= top.losses[1:])
    with pytest.raises(ValueError, match="k=0"):
        top_losses(model, data, k=0, device="cpu")


def test_confusion_matches_a_hand_count():
    preds = [0, 1, 1, 2, 2, 2, 0]
    labels = [0, 0, 1, 2, 1, 2, 2]
    expected = np.array([[1, 1, 0, 0],   # true 0: once right, once called 1
                         [0, 1, 1, 0],   # true 1
                         [1, 0, 2, 0],   # true 2
                         [0, 0, 0, 0]])  # class 3 never appears
    assert np.array_equal(confusion(torch.tensor(preds), torch.tensor(labels), 4), expected)
    logits = torch.nn.functional.one_hot(torch.tensor(preds), 4).float() * 3 - 1
    assert np.array_equal(confusion(logits, np.array(labels), 4), expected)
    with pytest.raises(ValueError, match="outside 0..1"):
        confusion(preds, labels, 2)
    with pytest.raises(ValueError, match="4 columns"):
        confusion(logits, labels, 5)


def test_normalised_rows_sum_to_one_and_empty_rows_stay_zero():
    cm = confusion([0, 1, 1, 2, 2, 2, 0], [0, 0, 1, 2, 1, 2, 2], 4, normalize=True)
    assert np.allclose(cm.sum(1), [1, 1, 1, 0])
    assert np.allclose(cm[2], [1 / 3, 0, 2 / 3, 0])
    assert np.array_equal(normalize_rows(np.zeros((2, 2))), np.zeros((2, 2)))


def test_plot_confusion_matrix_few_classes_shows_values_and_normalised_rows():
    cm = confusion([0, 1, 1, 2, 2, 2, 0], [0, 0, 1, 2, 1, 2, 2], 4)
    fig = plot_confusion_matrix(cm, CLASSES)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the matrix and its colour bar
    assert ax.get_title() == "confusion matrix (each row sums to 1)"
    shown = np.asarray(ax.images[0].get_array())
    assert np.allclose(shown.sum(1), [1, 1, 1, 0])
    assert len(ax.texts) == 16 and ax.texts[0].get_text() == "0.50"
    assert [t.get_text() for t in ax.get_xticklabels()] == CLASSES
    counts = plot_confusion_matrix(cm, CLASSES, normalize=False)
    assert counts.axes[0].texts[0].get_text() == "1"


def test_plot_confusion_matrix_many_classes_hides_values():
    names = [f"breed {i}" for i in range(37)]
    labels = np.arange(37).repeat(2)
    fig = plot_confusion_matrix(confusion(np.roll(labels, 1), labels, 37), names)
    ax = fig.axes[0]
    assert len(fig.axes) == 2
    assert len(ax.texts) == 0
    ticks = ax.get_xticklabels()
    assert len(ticks) == 37 and ticks[0].get_rotation() == 90 and ticks[0].get_fontsize() == 6
    with pytest.raises(ValueError, match="37 class names"):
        plot_confusion_matrix(np.zeros((3, 3)), names)


def test_plot_top_losses_titles_each_image():
    data, model = _data(), _model()
    top = top_losses(model, data, k=5, device="cpu")
    fig = plot_top_losses(top, data, CLASSES, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert len(fig.axes) == 5  # the empty sixth cell of the 2x3 grid is removed
    expected = [top_loss_title(CLASSES[p], CLASSES[a], loss, prob) for p, a, loss, prob in
                zip(top.predicted.tolist(), top.actual.tolist(), top.losses.tolist(), top.probability.tolist())]
    assert [ax.get_title() for ax in fig.axes] == expected
    assert fig._suptitle.get_text() == "prediction/actual/loss/probability"
    assert top_loss_title("cat", "dog", 2.314, 0.871) == "cat/dog\n2.31/0.87"
