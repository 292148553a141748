"""Tests for tlhelpers.core.style, the house style of the course's plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from tlhelpers.core.style import (  # noqa: E402
    METHOD_COLOURS,
    chance_line,
    finish,
    integer_ticks,
    legend_outside,
    line_style,
    method_colour,
)


def test_a_method_keeps_its_colour_and_unknown_names_get_a_stable_one():
    assert method_colour("maml") == METHOD_COLOURS["maml"] == method_colour("maml (after adaptation)")
    assert method_colour("my method") == method_colour("my method")
    assert method_colour("a") == method_colour("head only")


def test_line_style_dashes_training_and_marks_short_curves():
    assert line_style("dann", "train")["linestyle"] == "--"
    assert line_style("dann", "val")["linestyle"] == "-"
    assert "marker" in line_style("dann", points=3) and "marker" not in line_style("dann", points=100)
    assert "marker" not in line_style("dann")


def test_axes_helpers_and_finish_close_the_figure():
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [0.1, 0.5, 0.9], label="x")
    integer_ticks(ax, "x")
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())
    chance_line(ax, 0.2)
    legend_outside(ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["x", "chance"]
    assert plt.fignum_exists(fig.number)
    assert finish(fig) is fig and not plt.fignum_exists(fig.number)
