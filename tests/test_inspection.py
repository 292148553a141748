"""Tests for tlhelpers.course.inspection: top-k, most-confused pairs, prediction grid, uploads."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from tlhelpers.course.inspection import (
    decode_image,
    most_confused,
    prediction_grid,
    topk,
    uploaded_files,
)

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


def test_prediction_grid_marks_wrong_by_text_and_frame():
    import matplotlib.pyplot as plt

    from tlhelpers.course.inspection import RIGHT_COLOUR, WRONG_COLOUR

    images = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    fig = prediction_grid(images, [0, 1, 2, 0], [0, 2, 2, 1], CLASSES, ncols=3)
    assert isinstance(fig, Figure)
    assert not plt.fignum_exists(fig.number), "returned closed: shown once"
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == 4
    assert titled[1].get_title() == "\u2717 WRONG\ntrue: dog\npred: fox"
    assert titled[0].get_title() == "\u2713 right\ntrue: cat\npred: cat"
    wrong = [ax for ax in titled if "WRONG" in ax.get_title()]
    assert len(wrong) == 2, "each wrong prediction says so in words, not only in red"
    for ax in titled:
        colour = WRONG_COLOUR if ax in wrong else RIGHT_COLOUR
        assert ax.title.get_color() == colour
        spines = list(ax.spines.values())
        assert all(s.get_visible() for s in spines) and all(s.get_edgecolor()[:3] == spines[0].get_edgecolor()[:3]
                                                             for s in spines)
        assert ax.spines["top"].get_linewidth() == (4 if ax in wrong else 1.5), "a thick frame marks a mistake"


@pytest.mark.parametrize("ncols", [3, 6])
def test_prediction_grid_titles_do_not_cover_the_row_above(ncols):
    images = torch.randint(0, 255, (12, 3, 32, 32), dtype=torch.uint8)
    names = ["striped triangle", "solid square", "striped cross"]
    labels, preds = [i % 3 for i in range(12)], [(i // 2) % 3 for i in range(12)]
    fig = prediction_grid(images, labels, preds, names, ncols=ncols)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figure came back closed: draw it as a notebook would
    canvas.draw()
    renderer = canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_title()]
    for upper, lower in zip(axes, axes[ncols:]):
        image_bottom = upper.get_window_extent(renderer).y0
        title_top = lower.title.get_window_extent(renderer).y1
        assert title_top < image_bottom, "a title overlaps the image above it"
    assert all(ax.title.get_window_extent(renderer).y1 <= fig.bbox.y1 for ax in axes), "a title is cut off at the top"


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


def test_top5_explorer_shows_the_true_class(capsys):
    widgets = pytest.importorskip("ipywidgets")
    from tlhelpers.course.inspection import explorer_title, top5_explorer, top5_lines
    from tlhelpers.data.preprocessing import plain_preset
    from tlhelpers.models.backbones import build_classifier

    model = build_classifier("mini_resnet", 3, weights=None).model
    images = torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8)
    box = top5_explorer(model, images, CLASSES, plain_preset(16), labels=torch.tensor([2, 0]))
    assert isinstance(box, widgets.VBox)
    picker = box.children[0].children[0]
    assert [name for name, _ in picker.options] == ["test image 0 (fox)", "test image 1 (cat)"]
    # outside a kernel the Output widget lets the top-5 list through to stdout
    assert "fox  <- true class" in capsys.readouterr().out
    picker.value = 1
    assert "cat  <- true class" in capsys.readouterr().out
    assert explorer_title("test image 1", "cat") == "test image 1\ntrue class: cat"
    assert explorer_title("my_photo.jpg", None) == "my_photo.jpg\ntrue class: unknown", "uploads have no label"
    lines = top5_lines(torch.tensor([[0.0, 1.0, 2.0]]), CLASSES, "dog").splitlines()
    assert [line.split()[1] for line in lines] == ["fox", "dog", "cat"] and lines[1].endswith("<- true class")
    assert not any("true class" in line for line in top5_lines(torch.tensor([[0.0, 1.0, 2.0]]), CLASSES).splitlines())
    seven = [f"class {i}" for i in range(7)]
    lines = top5_lines(torch.arange(7.0)[None], seven, "class 0").splitlines()  # class 0 is the least likely
    assert len(lines) == 6 and lines[-1].endswith("class 0  <- true class, rank 7 of 7")
    assert lines[-1].split()[0] == f"{torch.arange(7.0).softmax(0)[0].item():.1%}"
    unlabelled = top5_explorer(model, images, CLASSES, plain_preset(16))
    assert [name for name, _ in unlabelled.children[0].children[0].options] == ["test image 0", "test image 1"]
    with pytest.raises(ValueError, match="labels"):
        top5_explorer(model, images, CLASSES, plain_preset(16), labels=[0])


def test_top5_explorer_without_ipywidgets_says_how_to_install(monkeypatch):
    import sys

    from tlhelpers.course.inspection import top5_explorer

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # as in the core install: import fails
    with pytest.raises(ImportError, match=r'pip install "tlhelpers\[course\]"') as err:
        top5_explorer(torch.nn.Identity(), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), CLASSES, lambda x: x)
    assert "\n" not in str(err.value) and "ipywidgets" in str(err.value)
