"""The learning-rate range test: leaves the model untouched, sweeps a geometric schedule, suggests a
learning rate that trains (where 100x that rate diverges), stops on divergence, and smooths as an
independent bias-corrected EMA does."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tlhelpers.training.engine import StepOutput
from tlhelpers.training.lr_finder import (
    LRFinderResult,
    lr_range_test,
    plot_lr_finder,
    smooth_losses,
    suggest_lr,
)


def _regression(n: int = 256, batch: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def _mse(model, batch, state):
    return StepOutput(F.mse_loss(model(batch[0]).squeeze(-1), batch[1]))


def _sgd(params):
    return torch.optim.SGD(params, lr=0.0)


def _classification() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (192,), generator=g)
    x = torch.randn(192, 6, generator=g) + 2.0 * F.one_hot(y, 6).float()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def _run(model, loader, **kw) -> LRFinderResult:
    kw.setdefault("device", "cpu")
    kw.setdefault("progress", False)
    return lr_range_test(model, loader, **kw)


def test_model_random_state_and_loader_are_left_as_they_were():
    model = _net().eval()  # eval mode, a gradient and non-default BN statistics must all survive
    model[1].running_mean.fill_(0.3)
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = _classification()
    loader_gen = loader.generator.get_state()
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(5)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(5)

    result = _run(model, loader, num_steps=30, end_lr=1.0)

    assert len(result.lrs) > 5  # it did train, so there was something to restore
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), k  # weights, running_mean/var and num_batches_tracked
    assert not any(m.training for m in model.modules())
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 7.0))
    assert model[4].weight.grad is None
    assert torch.equal(loader.generator.get_state(), loader_gen)  # the shuffle's own generator
    assert torch.equal(torch.rand(3), expected[0])  # dropout drew from the global generator
    assert random.random() == expected[1] and np.random.rand() == expected[2]


def test_lrs_follow_the_geometric_schedule_from_start_to_end():
    result = _run(nn.Linear(4, 1), _regression(), step_fn=_mse, optimizer=_sgd, start_lr=1e-6, end_lr=1e-2,
                  num_steps=12)
    assert not result.stopped_early
    np.testing.assert_allclose(result.lrs, np.geomspace(1e-6, 1e-2, 12), rtol=1e-12)
    assert len(result.losses) == len(result.raw_losses) == 12


def test_the_suggestion_trains_and_a_hundred_times_it_diverges():
    torch.manual_seed(1)
    model = nn.Linear(4, 1)
    loader = _regression()
    result = _run(model, loader, step_fn=_mse, optimizer=_sgd)
    assert result.suggestion is not None and 1e-4 < result.suggestion < 1
    x = torch.cat([b[0] for b in loader])
    y = torch.cat([b[1] for b in loader])

    def train(lr: float) -> tuple[float, float]:
        m = nn.Linear(4, 1)
        m.load_state_dict(model.state_dict())
        opt = torch.optim.SGD(m.parameters(), lr=lr)
        start = F.mse_loss(m(x).squeeze(-1), y).item()
        for _ in range(3):
            for xb, yb in loader:
                opt.zero_grad()
                F.mse_loss(m(xb).squeeze(-1), yb).backward()
                opt.step()
        return start, F.mse_loss(m(x).squeeze(-1), y).item()

    start, good = train(result.suggestion)
    assert good < 0.2 * start
    _, bad = train(100 * result.suggestion)
    assert not math.isfinite(bad) or bad > start


def test_the_suggestion_is_sensible_for_classification_with_the_default_step_and_adamw():
    result = _run(_net(), _classification(), num_steps=60)
    assert result.suggestion is not None and 1e-4 < result.suggestion < 1


def test_stops_early_once_the_smoothed_loss_exceeds_the_factor_times_the_best():
    result = _run(nn.Linear(4, 1), _regression(), step_fn=_mse, optimizer=_sgd, end_lr=100.0, diverge_factor=4.0)
    assert result.stopped_early
    assert len(result.lrs) < 100
    losses = result.losses
    assert losses[-1] > 4.0 * min(losses[:-1])  # the recorded step that diverged ...
    assert all(v <= 4.0 * min(losses[:i + 1]) for i, v in enumerate(losses[:-1]))  # ... and none before it
    fig = plot_lr_finder(result)
    assert isinstance(fig, Figure) and "stopped early" in fig.axes[0].get_title()


def test_only_trainable_parameters_are_optimised_and_frozen_ones_do_not_move():
    model = _net()
    backbone = model[:2]
    for p in backbone.parameters():
        p.requires_grad_(False)
    frozen = {k: v.clone() for k, v in backbone.state_dict().items()}  # incl. BN running statistics
    head_start = model[4].weight.detach().clone()
    given: list[list[nn.Parameter]] = []

    def make(params):
        given.append(list(params))
        return torch.optim.AdamW(params, lr=0.0)

    seen: dict[str, bool] = {"bn_eval": True, "frozen_still": True, "head_moved": False}

    def step(m, batch, state):
        seen["bn_eval"] &= not m[1].training  # train_mode keeps the frozen BatchNorm in eval mode
        seen["frozen_still"] &= all(torch.equal(v, frozen[k]) for k, v in m[:2].state_dict().items())
        seen["head_moved"] |= not torch.equal(m[4].weight, head_start)
        return StepOutput(F.cross_entropy(m(batch[0]), batch[1]))

    result = _run(model, _classification(), step_fn=step, optimizer=make, num_steps=20, end_lr=1.0)
    assert len(result.lrs) > 2
    assert len(given) == 1
    assert {id(p) for p in given[0]} == {id(p) for p in model[2:].parameters()}  # the head only
    assert seen == {"bn_eval": True, "frozen_still": True, "head_moved": True}


def test_parameter_groups_keep_their_ratio_to_the_scheduled_lr():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    holder: list[torch.optim.Optimizer] = []

    def make(params):
        holder.append(torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                                       {"params": model[1].parameters(), "lr": 1.0}], lr=0.0))
        return holder[0]

    group_lrs: list[tuple[float, float]] = []

    def step(m, batch, state):
        group_lrs.append(tuple(g["lr"] for g in holder[0].param_groups))
        return _mse(m, batch, state)

    result = _run(model, _regression(), step_fn=step, optimizer=make, start_lr=1e-5, end_lr=1e-3, num_steps=8)
    np.testing.assert_allclose([b for _, b in group_lrs], result.lrs)
    np.testing.assert_allclose([a for a, _ in group_lrs], 0.1 * np.array(result.lrs))


def test_smoothing_matches_an_independent_bias_corrected_ema():
    result = _run(_net(), _classification(), num_steps=25, end_lr=1e-2, smooth=0.9)
    ema, expected = 0.0, []
    for t, loss in enumerate(result.raw_losses, start=1):
        ema = 0.9 * ema + 0.1 * loss
        expected.append(ema / (1 - 0.9 ** t))
    np.testing.assert_allclose(result.losses, expected, rtol=1e-12)
    assert result.losses[0] == pytest.approx(result.raw_losses[0])  # bias-corrected: no pull towards 0
    assert smooth_losses([3.0, 1.0, 2.0], 0.0) == [3.0, 1.0, 2.0]


def test_a_short_loader_is_cycled():
    loader = _regression(n=64, batch=32)  # two batches
    seen: list[int] = []

    def step(m, batch, state):
        seen.append(id(batch[0]))
        return _mse(m, batch, state)

    result = _run(nn.Linear(4, 1), loader, step_fn=step, optimizer=_sgd, end_lr=1e-3, num_steps=7)
    assert len(result.lrs) == 7
    assert seen == [id(loader[i % 2][0]) for i in range(7)]


def test_suggest_lr_lies_inside_the_descent():
    lrs = list(np.geomspace(1e-6, 1.0, 60))
    losses = [2.0] * 20 + list(np.linspace(2.0, 0.5, 25)) + list(np.linspace(0.5, 6.0, 15))
    s = suggest_lr(lrs, losses)
    assert lrs[20] < s < lrs[44]
    assert suggest_lr([1e-3], [1.0]) is None


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"start_lr": 1.0, "end_lr": 1.0}, "start_lr < end_lr"),
        ({"start_lr": 0.0}, "start_lr < end_lr"),
        ({"num_steps": 4}, "at least 5"),
        ({"smooth": 1.0}, "smooth"),
        ({"diverge_factor": 1.0}, "diverge_factor"),
        ({"optimizer": "lbfgs"}, "unknown optimizer"),
    ],
)
def test_bad_arguments_raise_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        _run(nn.Linear(4, 1), _regression(), step_fn=_mse, **kw)


def test_empty_loaders_and_frozen_models_raise():
    with pytest.raises(ValueError, match="loader is empty"):
        _run(nn.Linear(4, 1), [], step_fn=_mse)
    with pytest.raises(ValueError, match="no batches"):
        _run(nn.Linear(4, 1), iter([]), step_fn=_mse)
    frozen = nn.Linear(4, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        _run(frozen, _regression(), step_fn=_mse)


def test_plot_marks_and_labels_the_suggestion():
    result = _run(nn.Linear(4, 1), _regression(), step_fn=_mse, optimizer=_sgd)
    fig = plot_lr_finder(result)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert f"suggested lr = {result.suggestion:.1e}" in labels
    vertical = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
    assert any(np.allclose(line.get_xdata(), [result.suggestion] * 2) for line in vertical)
