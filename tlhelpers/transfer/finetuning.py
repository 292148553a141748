"""Four ways to fine-tune a pretrained classifier, run with one function on the same data and budget.

- (a) head only: the backbone is frozen (its BatchNorm layers stay in eval mode);
- (b) head + last stage (``layer4`` of a ResNet), the usual "fine-tune a few upper layers";
- (c) everything, with discriminative learning rates (backbone at a fraction of the head's LR);
- (d) everything from random init, to show what pretraining buys.

All four use AdamW with linear warm-up and cosine decay (:func:`tlhelpers.training.schedules.warmup_cosine`).
The chapter 1 notebook and ``benchmarks/finetune.py`` both call :func:`run_strategy`.

Example:
    >>> results = [run_strategy(s, arch="resnet50", num_classes=37, train_loader=tl,
    ...                         val_loader=vl, test_loader=xl, num_epochs=8) for s in STRATEGIES]
    >>> print(results_table(results))
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from tlhelpers.core.runtime import seed_everything
from tlhelpers.models.backbones import BuiltModel, build_classifier, load_backbone_state
from tlhelpers.training.engine import History, evaluate, fit
from tlhelpers.training.freezing import count_parameters, unfreeze, unfreeze_last
from tlhelpers.training.param_groups import discriminative_groups, param_groups
from tlhelpers.training.schedules import warmup_cosine

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Strategy:
    """How to fine-tune.

    Attributes:
        key: short label, ``"a"`` to ``"d"``.
        name: what the table and the plots call it.
        last_stages: train only the last ``n`` stages (1 = the head); None trains everything.
        backbone_lr_mult: LR multiplier of every stage but the head (1.0 = one LR for all).
        pretrained: start from pretrained weights (False = random init).
    """

    key: str
    name: str
    last_stages: int | None
    backbone_lr_mult: float = 1.0
    pretrained: bool = True


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("a", "head only", last_stages=1),
    Strategy("b", "head + last stage", last_stages=2),
    Strategy("c", "full, discriminative LR", last_stages=None, backbone_lr_mult=0.1),
    Strategy("d", "from scratch", last_stages=None, pretrained=False),
)


@dataclass
class StrategyResult:
    """One strategy's run: the trained model, its curves and the numbers of the comparison table."""

    strategy: Strategy
    model: nn.Module
    history: History
    trainable_params: int
    total_params: int
    seconds_per_epoch: float
    test_acc: float | None
    weights_loaded: bool
    feature_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no model)."""
        return {
            "key": self.strategy.key, "name": self.strategy.name,
            "test_acc": self.test_acc, "final_val_acc": self.history["val_acc"][-1] if "val_acc" in self.history.keys else None,
            "trainable_params": self.trainable_params, "total_params": self.total_params,
            "seconds_per_epoch": self.seconds_per_epoch, "weights_loaded": self.weights_loaded,
            "feature_seconds": self.feature_seconds, "history": self.history.to_dict(),
        }


def prepare_model(
    strategy: Strategy,
    arch: str,
    num_classes: int,
    *,
    weights: str | None = "DEFAULT",
    source_state: Mapping[str, Tensor] | None = None,
) -> BuiltModel:
    """Build the model of ``strategy`` with the right weights and the right stages trainable.

    Args:
        strategy: one of :data:`STRATEGIES` or your own.
        arch: a torchvision architecture name.
        num_classes: classes of the target task.
        weights: the torchvision weights for pretrained strategies (e.g. ImageNet).
        source_state: a state dict from your own pretraining, used instead of ``weights``.
    """
    source = source_state if strategy.pretrained else None
    built = build_classifier(arch, num_classes, weights if strategy.pretrained and source is None else None)
    if source is not None:
        load_backbone_state(built.model, source)
        built.weights_loaded = True
    if strategy.last_stages is None:
        unfreeze(built.model)
    else:
        unfreeze_last(built.model, strategy.last_stages)
    return built


def run_strategy(
    strategy: Strategy,
    *,
    arch: str,
    num_classes: int,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    test_loader: Iterable[Any] | None = None,
    num_epochs: int = 5,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    warmup: float = 0.1,
    weights: str | None = "DEFAULT",
    source_state: Mapping[str, Tensor] | None = None,
    seed: int = 0,
    time_limit: float | None = None,
    cache_features: bool = False,
    feature_cache_dir: str | Path | None = None,
    **fit_kwargs: Any,
) -> StrategyResult:
    """Build, train and evaluate one strategy; every strategy gets the same data and budget.

    With ``time_limit`` (seconds), training stops after the first epoch that ends past it (see
    :func:`tlhelpers.training.engine.fit`); the result's history says so (``stopped_early``) and the test
    accuracy is that of the model at that point.

    Args:
        strategy: what to train and at which LRs.
        arch: torchvision architecture name.
        num_classes: classes of the target task.
        train_loader: ``(x, y)`` batches of the target task.
        val_loader: evaluated after every epoch (the curves).
        test_loader: evaluated once at the end (the table).
        num_epochs: epochs of training.
        lr: the head's learning rate (AdamW).
        weight_decay: AdamW decay of weights (not of biases and norms).
        warmup: warm-up as a fraction of all steps, then cosine decay.
        weights: torchvision weights of the pretrained strategies.
        source_state: your own pretrained state dict instead of ``weights``.
        seed: seeds the head's init and the data order, identical across strategies.
        time_limit: seconds of training wall time; None for no limit.
        cache_features: head-only strategies: send every image through the frozen backbone once and
            train the head on the stored features, seconds instead of minutes on a CPU. Each training
            image is then seen in one random augmentation (the one drawn during that pass) instead of
            a new one every epoch. The trained head is put back in the model.
        feature_cache_dir: keep those features on disk too (see
            :func:`tlhelpers.transfer.features.extract_features`); None keeps them in memory only.
        **fit_kwargs: passed to :func:`tlhelpers.training.engine.fit` (``device``, ``amp``, ``channels_last``, ...).

    Returns:
        A :class:`StrategyResult`.

    Raises:
        ValueError: ``cache_features`` with a strategy that trains more than the head.
    """
    if cache_features and (strategy.last_stages != 1 or not strategy.pretrained):
        raise ValueError(f"cache_features=True needs a frozen pretrained backbone, but strategy ({strategy.key}) "
                         f"{strategy.name} trains more than the head; use cache_features=False for it.")
    seed_everything(seed)
    built = prepare_model(strategy, arch, num_classes, weights=weights, source_state=source_state)
    model = built.model
    if cache_features:
        return _run_head_on_features(strategy, built, train_loader, val_loader, test_loader, num_epochs, lr,
                                     weight_decay, warmup, seed, time_limit, feature_cache_dir, fit_kwargs)
    if strategy.backbone_lr_mult == 1.0:
        groups = param_groups(model, lr, weight_decay=weight_decay)
    else:
        groups = discriminative_groups(model, lr, strategy.backbone_lr_mult, weight_decay)
    optimizer = torch.optim.AdamW(groups)
    fit_kwargs.setdefault("desc", f"({strategy.key}) {strategy.name}")
    history = fit(
        model, train_loader, num_epochs, optimizer=optimizer, val_loader=val_loader,
        scheduler=functools.partial(warmup_cosine, warmup_steps=warmup), time_limit=time_limit, **fit_kwargs,
    )
    test_acc = None
    if test_loader is not None:
        keep = {k: fit_kwargs[k] for k in ("device", "amp", "channels_last") if k in fit_kwargs}
        test_acc = evaluate(model, test_loader, **keep)["acc"]
    return StrategyResult(
        strategy, model, history, count_parameters(model), count_parameters(model, trainable_only=False),
        statistics.mean(history["seconds"]), test_acc, built.weights_loaded,
    )


def _run_head_on_features(
    strategy: Strategy, built: BuiltModel, train_loader: Iterable[Any], val_loader: Iterable[Any] | None,
    test_loader: Iterable[Any] | None, num_epochs: int, lr: float, weight_decay: float, warmup: float, seed: int,
    time_limit: float | None, cache_dir: str | Path | None, fit_kwargs: dict[str, Any],
) -> StrategyResult:
    """Strategy (a) on cached features: one pass through the frozen backbone, then the head alone."""
    import time
    import warnings

    from tlhelpers.models.api import get_head
    from tlhelpers.transfer.features import extract_features
    from tlhelpers.transfer.probe import FeatureLoader

    model = built.model.eval()
    device, amp = fit_kwargs.get("device"), fit_kwargs.get("amp", True)
    batch_size = getattr(train_loader, "batch_size", None) or 64
    start = time.perf_counter()

    def features(loader: Iterable[Any] | None, shuffle: bool = False) -> FeatureLoader | None:
        if loader is None:
            return None
        with warnings.catch_warnings():  # the training loader shuffles: reading it in order is what we want here
            warnings.filterwarnings("ignore", message="the loader shuffles")
            x, y = extract_features(model, "avgpool", loader, cache_dir=cache_dir, device=device,  # type: ignore[call-overload]
                                    amp=amp)
        return FeatureLoader(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed)

    train_f, val_f, test_f = features(train_loader, shuffle=True), features(val_loader), features(test_loader)
    feature_seconds = time.perf_counter() - start
    head = get_head(model)
    optimizer = torch.optim.AdamW(param_groups(head, lr, weight_decay=weight_decay))
    head_kwargs = {**fit_kwargs, "amp": False, "channels_last": False}
    head_kwargs.setdefault("desc", f"({strategy.key}) {strategy.name}, cached features")
    history = fit(head, train_f, num_epochs, optimizer=optimizer, val_loader=val_f,  # type: ignore[arg-type]
                  scheduler=functools.partial(warmup_cosine, warmup_steps=warmup), time_limit=time_limit, **head_kwargs)
    test_acc = evaluate(head, test_f, device=device)["acc"] if test_f is not None else None
    model.to(next(head.parameters()).device)
    return StrategyResult(
        strategy, model, history, count_parameters(model), count_parameters(model, trainable_only=False),
        statistics.mean(history["seconds"]), test_acc, built.weights_loaded, feature_seconds,
    )


def results_table(results: Iterable[StrategyResult]) -> str:
    """A Markdown table: strategy, test accuracy, trainable parameters, seconds per epoch."""
    lines = [
        "| strategy | test acc | final val acc | trainable params | s / epoch |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        d = r.to_dict()
        acc = "n/a" if d["test_acc"] is None else f"{100 * d['test_acc']:.1f} %"
        val = "n/a" if d["final_val_acc"] is None else f"{100 * d['final_val_acc']:.1f} %"
        lines.append(
            f"| ({d['key']}) {d['name']} | {acc} | {val} | {d['trainable_params']:,} | {d['seconds_per_epoch']:.1f}"
            + ("" if d["feature_seconds"] is None else f" (+ {d['feature_seconds']:.0f} s once, to cache the features)")
            + " |"
        )
    return "\n".join(lines)


def plot_strategies_by_target(by_target: Mapping[str, Iterable[StrategyResult]], chance: float | None = None) -> Figure:
    """Grouped bars of test accuracy: one group per strategy, one bar per target; returns the Figure.

    House style: each target keeps its colour (``near`` blue, ``far`` vermillion, see
    :func:`tlhelpers.core.style.method_colour`), the chance line is grey and dotted, the legend sits
    outside the bars, and the figure comes back closed (shown once, as a cell's value or with
    ``display``).

    Args:
        by_target: ``{target name: results}``, e.g. ``{"near": near.values(), "far": far.values()}``; a
            strategy missing from a target, or run there without a test loader (``test_acc`` None),
            simply has no bar there.
        chance: draw the chance line at this accuracy (e.g. ``1 / num_classes``).
    """
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import LABEL_SIZE, chance_line, finish, legend_outside, method_colour

    runs = {target: {r.strategy.key: r for r in results} for target, results in by_target.items()}
    strategies: dict[str, Strategy] = {}
    for results in runs.values():
        strategies.update({key: r.strategy for key, r in results.items()})
    keys = sorted(strategies)
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(1.7 * len(keys) + 3.0, 3.8))
    for i, (target, results) in enumerate(runs.items()):
        tested = {key: r.test_acc for key, r in results.items() if r.test_acc is not None}
        xs = [j + (i - (len(runs) - 1) / 2) * width for j, key in enumerate(keys) if key in tested]
        accs = [100 * tested[key] for key in keys if key in tested]
        bars = ax.bar(xs, accs, width, label=f"{target} target", color=method_colour(target), edgecolor="white")
        ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=1)
    if chance is not None:
        chance_line(ax, 100 * chance)
    ax.set_xticks(range(len(keys)), [f"({k}) {strategies[k].name}" for k in keys], fontsize=9)
    ax.set_ylabel("test accuracy (%)", fontsize=LABEL_SIZE)
    ax.set_ylim(0, min(105, 1.12 * ax.get_ylim()[1]))  # room for the bar labels
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    legend_outside(ax)
    ax.set_title("Which strategy pays off depends on how far the target is", fontsize=LABEL_SIZE + 1)
    return finish(fig)

