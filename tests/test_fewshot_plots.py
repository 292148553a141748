from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from tlhelpers.core.style import method_colour  # noqa: E402
from tlhelpers.fewshot.evaluation import EvalResult  # noqa: E402
from tlhelpers.fewshot.plots import (  # noqa: E402
    plot_accuracy_curves,
    plot_episode,
    plot_meta_history,
    plot_method_comparison,
    plot_prototype_projection,
)
from tlhelpers.fewshot.sampler import Episode  # noqa: E402
from tlhelpers.training.engine import History  # noqa: E402

CURVES = {
    "ProtoNet": [EvalResult(0.8, 0.02, 20), EvalResult(0.9, 0.02, 20), EvalResult(0.95, 0.01, 20)],
    "pixels": [EvalResult(0.4, 0.03, 20), EvalResult(0.55, 0.03, 20), EvalResult(0.6, 0.03, 20)],
}


def _episode() -> Episode:
    gen = torch.Generator().manual_seed(0)
    n, k, q = 3, 2, 2
    return Episode(
        torch.rand(n * k, 1, 16, 16, generator=gen), torch.arange(n).repeat_interleave(k),
        torch.rand(n * q, 1, 16, 16, generator=gen), torch.arange(n).repeat_interleave(q), torch.tensor([7, 2, 5]),
    )


def _histories() -> dict[str, History]:
    maml = History([{"step": i, "train_loss": 1.5 - 0.1 * i / 20, "train_acc": 0.3 + i / 400, "val_acc": 0.3 + i / 500}
                    for i in (20, 40, 60, 80)])
    reptile = History([{"step": i, "train_loss": 1.0, "train_acc": 0.8} for i in (15, 30)])
    return {"MAML": maml, "Reptile": reptile}


def _projection() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    s, q = torch.randn(6, 8, generator=gen), torch.randn(6, 8, generator=gen)
    y = torch.arange(3).repeat_interleave(2)
    return s, y, q, y, torch.randn(3, 8, generator=gen)


TABLE = {
    "ProtoNet": {1: EvalResult(0.9, 0.01, 600), 5: EvalResult(0.97, 0.01, 600)},
    "MAML": {1: EvalResult(0.7, 0.02, 600), 5: EvalResult(0.85, 0.02, 600)},
    "pixels": {1: EvalResult(0.44, 0.01, 600)},
}

PLOTS = {
    "episode": lambda: plot_episode(_episode(), class_names=[f"c{i}" for i in range(8)]),
    "curves": lambda: plot_accuracy_curves((1, 3, 5), CURVES, xlabel="shots", n_way=5),
    "comparison": lambda: plot_method_comparison(TABLE, n_way=5, title="t"),
    "history": lambda: plot_meta_history(_histories(), n_way=5),
    "projection": lambda: plot_prototype_projection(*_projection()),
}


@pytest.mark.parametrize("name", list(PLOTS))
def test_every_plot_returns_a_closed_figure(name: str) -> None:
    before = plt.get_fignums()
    fig = PLOTS[name]()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert plt.get_fignums() == before  # closed: the notebook shows it once, as the cell's value


def _chance_lines(ax: plt.Axes, level: float) -> list:
    return [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1 and line.get_ydata()[0] == pytest.approx(level)]


def test_accuracy_curves_have_integer_shot_ticks_markers_chance_and_method_colours() -> None:
    fig = plot_accuracy_curves((1, 3, 5), CURVES, xlabel="shots per class (K)", n_way=5)
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [1, 3, 5]  # no 1.5, 2.5 ... between the shots
    assert len(_chance_lines(ax, 20.0)) == 1
    curves = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar: (data line, caps, bars)
    assert set(curves) == set(CURVES)
    for label, line in curves.items():
        assert line.get_marker() == "o", label  # 3 points: a marker on each
        assert to_hex(line.get_color()) == to_hex(method_colour(label)), label
    assert "chance (20 %)" in ax.get_legend_handles_labels()[1]


def test_accuracy_curves_without_n_way_draw_no_chance_line() -> None:
    ax = plot_accuracy_curves(range(6), CURVES, xlabel="inner steps").axes[0]
    assert not _chance_lines(ax, 20.0)
    assert all(float(t).is_integer() for t in ax.get_xticks())


def test_meta_history_colours_styles_markers_and_chance() -> None:
    fig = plot_meta_history(_histories(), n_way=5)
    ax_loss, ax_acc = fig.axes
    assert len(_chance_lines(ax_acc, 0.2)) == 1
    lines = {line.get_label(): line for line in ax_acc.get_lines()}
    assert {"MAML train", "MAML val", "Reptile train"} <= set(lines)
    assert lines["MAML train"].get_linestyle() == "--" and lines["MAML val"].get_linestyle() == "-"
    assert to_hex(lines["MAML val"].get_color()) == to_hex(method_colour("MAML"))
    assert to_hex(lines["Reptile train"].get_color()) == to_hex(method_colour("Reptile"))
    assert all(line.get_marker() == "o" for line in ax_loss.get_lines())  # 2-4 points per curve
    assert all(float(t).is_integer() for ax in (ax_loss, ax_acc) for t in ax.get_xticks())


def test_method_comparison_draws_one_bar_per_method_and_shot_with_chance_line() -> None:
    fig = plot_method_comparison(TABLE, n_way=5, title="t")
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted([90.0, 97.0, 70.0, 85.0, 44.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1-shot", "5-shot"]
    assert len(_chance_lines(ax, 20.0)) == 1
    labels = ax.get_legend_handles_labels()[1]
    assert {"ProtoNet", "MAML", "pixels", "chance (20 %)"} == set(labels)
    for container in ax.containers:
        if container.get_label() in TABLE:  # a method keeps its colour in every figure
            assert all(to_hex(p.get_facecolor()) == to_hex(method_colour(container.get_label())) for p in container)
    with pytest.raises(ValueError, match="empty"):
        plot_method_comparison({}, n_way=5)
