from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tlhelpers.fewshot.evaluation import EvalResult  # noqa: E402
from tlhelpers.fewshot.plots import plot_method_comparison  # noqa: E402


def test_method_comparison_draws_one_bar_per_method_and_shot_with_chance_line() -> None:
    table = {
        "ProtoNet": {1: EvalResult(0.9, 0.01, 600), 5: EvalResult(0.97, 0.01, 600)},
        "MAML": {1: EvalResult(0.7, 0.02, 600), 5: EvalResult(0.85, 0.02, 600)},
        "pixels": {1: EvalResult(0.44, 0.01, 600)},
    }
    before = plt.get_fignums()
    fig = plot_method_comparison(table, n_way=5, title="t")
    assert plt.get_fignums() == before  # closed: the notebook shows it once
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted([90.0, 97.0, 70.0, 85.0, 44.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1-shot", "5-shot"]
    assert any(line.get_ydata()[0] == pytest.approx(20.0) for line in ax.get_lines())  # chance
    labels = ax.get_legend_handles_labels()[1]
    assert {"ProtoNet", "MAML", "pixels", "chance (20 %)"} == set(labels)
    with pytest.raises(ValueError, match="empty"):
        plot_method_comparison({}, n_way=5)
