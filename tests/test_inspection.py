"""Tests for tlhelpers.inspection: top-k, most-confused pairs, prediction grid, uploads."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from tlhelpers.inspection import decode_image, most_confused, prediction_grid, topk, uploaded_files

CLASSES = ["cat", "dog", "fox"]


def test_topk_matches_softmax_sorting():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    result = topk(logits, CLASSES, k=2)
    probs = torch.softmax(logits, 1)
    assert [n for n, _ in result[0]] == ["dog", "fox"] and [n for n, _ in result[1]] == ["fox", "cat"]
    assert result[0][0][1] == pytest.approx(probs[0, 1].item())
    assert len(topk(logits[0], CLASSES, k=5)[0]) == 3
    with pytest.raises(ValueError, match="names"):
        topk(logits, ["a", "b"])


def test_most_confused_counts_off_diagonal_pairs():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    preds = np.array([1, 1, 0, 0, 1, 1, 2, 0])
    manual = {}
    for t, p in zip(labels, preds):
        if t != p:
            manual[(CLASSES[t], CLASSES[p])] = manual.get((CLASSES[t], CLASSES[p]), 0) + 1
    pairs = most_confused(torch.as_tensor(labels), torch.as_tensor(preds), CLASSES, k=10)
    assert pairs[0] == ("cat", "dog", 2)
    assert {(t, p): c for t, p, c in pairs} == manual


def test_prediction_grid_titles_and_colours():
    images = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    fig = prediction_grid(images, [0, 1, 2, 0], [0, 2, 2, 1], CLASSES, ncols=3)
    assert isinstance(fig, Figure)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == 4 and titled[1].get_title() == "true: dog\npred: fox"
    assert titled[1].title.get_color() == "red" and titled[0].title.get_color() == "green"


def test_uploaded_files_both_ipywidgets_versions():
    v7 = {"a.png": {"metadata": {"name": "a.png"}, "content": b"123"}}
    v8 = ({"name": "a.png", "type": "image/png", "content": memoryview(b"123")},)
    assert uploaded_files(v7) == uploaded_files(v8) == [("a.png", b"123")]


def test_decode_image_resizes_and_crops():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(buf, format="PNG")
    img = decode_image(buf.getvalue(), 16)
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and int(img[0].min()) == 255


def test_top5_explorer_builds_a_widget():
    widgets = pytest.importorskip("ipywidgets")
    from tlhelpers.backbones import build_classifier
    from tlhelpers.inspection import top5_explorer
    from tlhelpers.preprocessing import plain_preset

    model = build_classifier("mini_resnet", 3, weights=None).model
    box = top5_explorer(model, torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8), CLASSES,
                        plain_preset(16))
    assert isinstance(box, widgets.VBox)
