import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from tlhelpers.course.strategy_map import (
    METHODS,
    MapConfig,
    best_methods,
    map_markdown,
    map_summary,
    plot_strategy_map,
    prototype_accuracy,
    recommended_method,
    run_seed,
    subsample,
    train_steps,
)

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "strategy_map_reduced.json"


def _records(accs):
    """Records from {(target, method, k): [acc per seed]}."""
    return [{"target": t, "method": m, "k": k, "seed": s, "test_acc": a}
            for (t, m, k), seeds in accs.items() for s, a in enumerate(seeds)]


@pytest.mark.parametrize("k", [1, 5, 20])
def test_subsample_gives_exactly_k_per_class_and_is_deterministic(k):
    labels = torch.arange(10).repeat_interleave(30)[torch.randperm(300, generator=torch.Generator().manual_seed(1))]
    idx = subsample(labels, k, seed=3)
    assert torch.bincount(labels[idx], minlength=10).tolist() == [k] * 10
    assert len(set(idx.tolist())) == len(idx)  # no image twice
    assert torch.equal(idx, subsample(labels, k, seed=3))
    assert not torch.equal(idx.sort().values, subsample(labels, k, seed=4).sort().values)


def test_smaller_k_is_a_subset_of_larger_k():
    labels = torch.arange(10).repeat(30)
    assert set(subsample(labels, 1, 0).tolist()) <= set(subsample(labels, 5, 0).tolist()) <= set(subsample(labels, 20, 0).tolist())


def test_subsample_refuses_more_than_a_class_has():
    with pytest.raises(ValueError, match="smallest class has 2"):
        subsample(torch.tensor([0, 0, 1, 1, 1]), 3, 0)


def test_train_steps_floor_and_chapter_1_schedule():
    cfg = MapConfig()
    assert train_steps(10, cfg) == train_steps(50, cfg) == 100  # 1 or 5 per class: fixed steps, not 1 step an epoch
    assert train_steps(1000, cfg) == 248  # all 100 per class: 8 epochs of 31 batches
    assert train_steps(10, MapConfig(min_steps=10, rounds=4)) % 4 == 0


def test_summary_agrees_with_numpy():
    rng = np.random.default_rng(0)
    accs = {(t, m, k): rng.uniform(0, 1, 3).tolist() for t in ("near", "far") for m in METHODS for k in (1, 5)}
    summary = map_summary(_records(accs))
    assert len(summary) == len(accs)
    for row in summary:
        ref = np.array(accs[row["target"], row["method"], row["k"]])
        assert row["mean"] == pytest.approx(ref.mean())
        assert row["std"] == pytest.approx(ref.std(ddof=1))
        assert list(row["test_acc_per_seed"].values()) == pytest.approx(ref.tolist())
    assert [r["method"] for r in summary[:2 * len(METHODS)]][::2] == list(METHODS)  # methods in table order


def test_best_methods_needs_every_seed():
    accs = {("near", "prototype", 1): [0.60, 0.60, 0.60], ("near", "linear_probe", 1): [0.50, 0.50, 0.50],
            # best on average but behind in seed 2: not decisive
            ("near", "partial", 5): [0.90, 0.90, 0.50], ("near", "full", 5): [0.60, 0.60, 0.60],
            # ahead in every seed but by less than the margin in one
            ("far", "full", 1): [0.70, 0.70, 0.62], ("far", "scratch", 1): [0.60, 0.60, 0.60]}
    best = {(c["target"], c["k"]): c for c in best_methods(map_summary(_records(accs)), margin=0.03)}
    assert best["near", 1]["best"] == "prototype" and best["near", 1]["decisive"]
    assert best["near", 1]["min_gap"] == pytest.approx(0.10)
    assert best["near", 5]["best"] == "partial" and not best["near", 5]["decisive"]
    assert best["near", 5]["top"] == ["partial", "full"]  # full is not clearly beaten
    assert best["far", 1]["best"] == "full" and not best["far", 1]["decisive"]
    assert best["near", 1]["top"] == ["prototype"]
    assert best_methods(map_summary(_records(accs)), margin=0.01)[-1]["decisive"]


def test_prototype_accuracy_matches_a_reference_loop():
    gen = torch.Generator().manual_seed(0)
    ftr, ytr = torch.randn(20, 6, generator=gen), torch.arange(4).repeat(5)
    fte, yte = torch.randn(30, 6, generator=gen), torch.randint(0, 4, (30,), generator=gen)
    unit = ftr / ftr.norm(dim=1, keepdim=True)
    means = [unit[ytr == c].mean(0).numpy() for c in range(4)]
    pred = [int(np.argmax([np.dot(q, m) / np.linalg.norm(m) for m in means])) for q in fte.numpy()]
    assert prototype_accuracy(ftr, ytr, fte, yte) == pytest.approx(np.mean(np.array(pred) == yte.numpy()))
    centres = 5 * torch.eye(4, 6)  # well-separated classes: every query lands on its own prototype
    assert prototype_accuracy(centres[ytr] + 0.1 * ftr, ytr, centres[yte] + 0.1 * fte, yte) == 1.0


def test_tiny_run_returns_every_record(tmp_path):
    cfg = MapConfig(image_size=16, n_per_class=6, shots=(1, 5), batch_size=8, min_steps=2, epochs=1, rounds=2,
                    pretrain={"n_per_class": 8, "num_epochs": 1, "lr": 3e-3})
    records = run_seed("far", 0, cfg, root=tmp_path)
    assert sorted((r["method"], r["k"]) for r in records) == sorted((m, k) for m in METHODS for k in (1, 5))
    assert all(0 <= r["test_acc"] <= 1 and r["target"] == "far" and r["seed"] == 0 for r in records)
    steps = {1: 2, 5: 6}  # 10 images: the floor of 2; 50 images: one epoch of 6 batches
    assert all(r["steps_done"] == r["steps"] == steps[r["k"]] == train_steps(10 * r["k"], cfg) for r in records if "steps" in r)
    assert sum("steps" in r for r in records) == 6  # scratch, partial, full at both k
    assert list((tmp_path / "checkpoints").glob("proxy-*.pt"))  # the pretraining went to the given root
    with pytest.raises(ValueError, match="must come from"):
        run_seed("far", 0, cfg, methods=["knn"], root=tmp_path)


def test_plot_has_a_panel_per_target_and_stars_decisive_cells():
    accs = {(t, m, k): [0.2 + 0.1 * i + 0.01 * s for s in range(3)]
            for t in ("near", "far") for i, m in enumerate(METHODS) for k in (1, 5, 100)}
    summary = map_summary(_records(accs))
    before = plt.get_fignums()
    fig = plot_strategy_map(summary, best_methods(summary))
    assert plt.get_fignums() == before  # closed: shown once by the notebook
    assert [ax.get_title() for ax in fig.axes] == ["near target", "far target"]
    assert len(fig.axes[0].get_lines()) >= len(METHODS) + 3 + 1  # one line a method, 3 stars, chance
    assert "all (100)" in [t.get_text() for t in fig.axes[0].get_xticklabels()]
    with pytest.raises(ValueError, match="empty"):
        plot_strategy_map([])


def test_recommendations_map_onto_the_map_methods():
    assert recommended_method(1, "near") == "prototype"
    assert recommended_method(20, "near") == "linear_probe"
    assert recommended_method(10_000, "far") == "full"


@pytest.mark.skipif(not RESULT.exists(), reason="no committed strategy map")
def test_committed_map_is_consistent_and_recommend_agrees_where_it_is_decisive():
    d = json.loads(RESULT.read_text())
    summary = map_summary(d["records"])
    assert [(r["target"], r["method"], r["k"]) for r in summary] == [(r["target"], r["method"], r["k"]) for r in d["summary"]]
    assert [r["mean"] for r in summary] == pytest.approx([r["mean"] for r in d["summary"]])
    best = best_methods(summary, d["config"]["margin"])
    assert [{**c, "min_gap": 0} for c in best] == [{**c, "min_gap": 0} for c in d["best"]]
    assert [c["min_gap"] for c in best] == pytest.approx([c["min_gap"] for c in d["best"]])
    for cell in d["best"]:
        method = recommended_method(cell["k"], cell["target"])
        if cell["decisive"]:
            assert method == cell["best"], cell
        assert method in cell["top"], (method, cell)  # recommend never picks a clearly beaten method


def test_markdown_table_has_a_row_per_cell_and_bolds_only_decisive_winners():
    accs = {("near", "prototype", 1): [0.6, 0.6, 0.6], ("near", "full", 1): [0.5, 0.5, 0.5],
            ("far", "prototype", 20): [0.5, 0.5, 0.5], ("far", "full", 20): [0.5, 0.51, 0.49]}
    summary = map_summary(_records(accs))
    table = map_markdown(summary, best_methods(summary))
    lines = table.splitlines()
    assert len(lines) == 2 + 2 and lines[0].count("|") == lines[2].count("|")
    assert lines[2].startswith("| near | 1 | 50.0 ± 0.0 | 60.0 ± 0.0 | **nearest prototype (frozen)** |")
    assert "**" not in lines[3]  # the far cell is a tie
    assert lines[2].endswith("| prototype |") and lines[3].endswith("| partial |")  # recommend()'s pick
