from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from tlhelpers.core.style import method_colour
from tlhelpers.domain.visual import plot_domain_embedding, plot_sample_grid, plot_training_signals
from tlhelpers.training.engine import History

matplotlib.use("Agg")


def test_training_signals_have_integer_epochs_a_chance_line_and_a_legend():
    hist = History([{"epoch": e, "domain_acc": 0.5 + 0.04 * e, "lambda": e / 10} for e in range(1, 11)])
    flat = History([{"epoch": e, "domain_acc": 0.9, "lambda": 0.0} for e in range(1, 11)])
    fig = plot_training_signals({"DANN": hist, "DANN without reversal": flat})
    assert not plt.fignum_exists(fig.number)
    acc_ax, lam_ax = fig.axes
    for ax in (acc_ax, lam_ax):
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 10]
        assert ticks and all(float(t).is_integer() for t in ticks)
    lines = {line.get_label(): line for line in acc_ax.get_lines()}
    assert lines["chance"].get_ydata()[0] == 0.5
    assert lines["DANN"].get_color() == method_colour("DANN")
    legend = lam_ax.get_legend()
    assert legend is not None and {t.get_text() for t in legend.get_texts()} >= {"DANN", "DANN without reversal", "chance"}


def test_domain_embedding_has_a_legend_per_panel_and_is_closed():
    gen = np.random.default_rng(0)
    points = gen.normal(size=(40, 2))
    is_target = np.repeat([0, 1], 20)
    labels = np.tile(np.arange(4), 10)
    fig = plot_domain_embedding(points, is_target, labels, title="dann", class_names=list("abcd"), note="agreement 0.5")
    assert not plt.fignum_exists(fig.number)
    by_domain, by_class = fig.axes
    assert [t.get_text() for t in by_domain.get_legend().get_texts()] == ["source", "target"]
    assert [t.get_text() for t in by_class.get_legend().get_texts()] == ["a", "b", "c", "d", "source", "target"]
    assert by_domain.get_title() == "dann - by domain" and fig._suptitle.get_text() == "agreement 0.5"


def test_sample_grid_is_closed():
    ds = [(torch.rand(3, 8, 8), i) for i in range(4)]
    fig = plot_sample_grid(ds, ds, n=4)
    assert not plt.fignum_exists(fig.number) and len(fig.axes) == 8
