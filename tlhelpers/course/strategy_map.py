"""A measured strategy map: five ways to use a pretrained backbone, by labelled images per class.

Chapter 5's decision chart (:mod:`tlhelpers.course.recommend`) is a rule of thumb; this module measures it
on chapter 1's reduced data (shapes classes 0-9, the ``near`` and ``far`` targets, mini_resnet
proxy-pretrained on classes 10-19). For ``k`` labelled training images per class it runs:

- ``scratch``: random init, trained end to end (chapter 1's strategy d);
- ``linear_probe``: scikit-learn logistic regression on frozen ``avgpool`` features (chapter 2);
- ``partial``: head + last stage fine-tuned (chapter 1's strategy b);
- ``full``: everything fine-tuned, backbone at 0.1 × the head's LR (chapter 1's strategy c);
- ``prototype``: nearest class mean of the frozen features by cosine similarity (chapter 4's
  prototypes, without meta-training).

Fine-tuning runs train for a fixed number of optimisation steps (:func:`train_steps`), not for
epochs, so a 10-image training set is not one step per epoch. Nothing is selected by test
accuracy: the step counts and learning rates are fixed beforehand, the final model is tested.

Example:
    >>> records = run_map(["near"], [0], MapConfig(shots=(1, 5)))
    >>> summary = map_summary(records)
    >>> fig = plot_strategy_map(summary, best_methods(summary))
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler

from tlhelpers.data.balanced import balanced_indices

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The map's methods, in the order the table and the plot show them.
METHODS: tuple[str, ...] = ("scratch", "linear_probe", "partial", "full", "prototype")
METHOD_NAMES: dict[str, str] = {
    "scratch": "from scratch", "linear_probe": "linear probe (frozen)", "partial": "head + last stage",
    "full": "full, discriminative LR", "prototype": "nearest prototype (frozen)",
}
#: The fine-tuning methods and chapter 1's strategy each one runs.
_STRATEGY_KEYS = {"scratch": "d", "partial": "b", "full": "c"}


@dataclass(frozen=True)
class MapConfig:
    """Settings of one map; the benchmark saves them beside the results.

    Attributes:
        arch: backbone (chapter 1's reduced mode: ``mini_resnet``).
        image_size: side of the shapes images.
        n_per_class: training (and test) images per class drawn; ``k`` larger than this is invalid.
        shots: labelled training images per class to try (``n_per_class`` = "all").
        batch_size: fine-tuning batch size.
        lr: the head's AdamW learning rate (chapter 1's).
        min_steps: fine-tuning steps for small ``k`` (see :func:`train_steps`).
        epochs: epochs of chapter 1's schedule, used when it gives more steps than ``min_steps``.
        rounds: the steps are split into this many rounds, with a validation pass after each.
        crop_scale: random-crop area range of the training augmentation.
        feature_layer: the frozen layer of ``linear_probe`` and ``prototype``.
        probe_c: inverse L2 strength of the logistic regression (fixed, not tuned on test data).
        pretrain: keyword arguments of :func:`tlhelpers.course.proxy_pretraining.proxy_pretrained_state`.
    """

    arch: str = "mini_resnet"
    image_size: int = 32
    n_per_class: int = 100
    shots: tuple[int, ...] = (1, 5, 20, 100)
    batch_size: int = 32
    lr: float = 2e-3
    min_steps: int = 100
    epochs: int = 8
    rounds: int = 4
    crop_scale: tuple[float, float] = (0.7, 1.0)
    feature_layer: str = "avgpool"
    probe_c: float = 1.0
    pretrain: dict[str, Any] = field(default_factory=lambda: {"n_per_class": 500, "num_epochs": 10, "lr": 3e-3})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, with the step count of every ``k`` (10 classes)."""
        return {**asdict(self), "prototype_metric": "cosine",
                "steps_per_k": {str(k): train_steps(k * 10, self) for k in self.shots}}


def train_steps(n_train: int, config: MapConfig) -> int:
    """Fine-tuning steps for ``n_train`` images: ``epochs`` of full batches, but never fewer than ``min_steps``.

    With 100 images per class (1,000 images, batch 32) that is 8 epochs × 31 batches = 248 steps; with
    1, 5 or 20 per class the floor gives a fixed ``min_steps``, rounded up to whole rounds.
    """
    steps = max(config.min_steps, config.epochs * (n_train // config.batch_size))
    return config.rounds * math.ceil(steps / config.rounds)


def subsample(labels: Tensor, k: int, seed: int) -> Tensor:
    """Indices of exactly ``k`` items of every class, the same for the same ``seed``.

    Built on :func:`tlhelpers.data.balanced.balanced_indices`, so a smaller ``k`` with the same seed
    picks a subset of a larger one's images.

    Raises:
        ValueError: if a class has fewer than ``k`` items or ``k < 1``.
    """
    labels = torch.as_tensor(labels)
    counts = torch.bincount(labels)
    present = counts[counts > 0]
    if k < 1 or int(present.min()) < k:
        raise ValueError(f"k={k} images per class is impossible: the smallest class has {int(present.min())}.")
    return balanced_indices(labels, k * len(present), seed=seed)


def prototype_accuracy(train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor) -> float:
    """Accuracy of the nearest class mean by cosine similarity (means of L2-normalised features).

    Shape:
        train_features: ``(N, D)``; test_features: ``(M, D)``; labels ``(N,)`` and ``(M,)``.
    """
    from tlhelpers.fewshot.protonet import prototypes

    unit = torch.nn.functional.normalize
    protos = unit(prototypes(unit(train_features.float(), dim=1), train_labels, int(train_labels.max()) + 1), dim=1)
    pred = (unit(test_features.float(), dim=1) @ protos.T).argmax(1)
    return float((pred == test_labels).float().mean())


def _finetune(method: str, config: MapConfig, train: Any, loaders: tuple[DataLoader, DataLoader], source_state: Mapping[str, Tensor],
              seed: int, device: torch.device, time_limit: float | None) -> dict[str, Any]:
    from tlhelpers.transfer.finetuning import STRATEGIES, run_strategy

    strategy = next(s for s in STRATEGIES if s.key == _STRATEGY_KEYS[method])
    steps = train_steps(len(train), config)
    per_round = steps // config.rounds
    # whole permutations of the k images back to back, as many as the steps need
    sampler = RandomSampler(train, num_samples=per_round * config.batch_size)
    loader = DataLoader(train, batch_size=config.batch_size, sampler=sampler, drop_last=True)
    result = run_strategy(strategy, arch=config.arch, num_classes=train.num_classes, train_loader=loader,
                          val_loader=loaders[0], test_loader=loaders[1], num_epochs=config.rounds, lr=config.lr,
                          weights=None, source_state=source_state, seed=seed, device=device, amp=False,
                          progress=False, time_limit=time_limit, steps_per_epoch=per_round)
    return {"test_acc": result.test_acc, "val_acc": result.history["val_acc"][-1], "steps": steps,
            "steps_done": per_round * len(result.history), "stopped_early": result.history.stopped_early}


def run_seed(target: str, seed: int, config: MapConfig = MapConfig(), *, methods: Sequence[str] = METHODS,
             device: str | torch.device | None = None, root: str | Path | None = None,
             time_limit: float | None = None) -> list[dict[str, Any]]:
    """Every method at every ``k`` of ``config.shots`` on one target and seed.

    Args:
        target: ``"near"`` or ``"far"`` (see :func:`tlhelpers.course.finetune_data.load_finetune_data`).
        seed: seed of the data, the pretraining, the subsample and the inits.
        config: the settings.
        methods: a subset of :data:`METHODS`.
        device: see :func:`tlhelpers.core.runtime.get_device`.
        root: data folder (proxy checkpoints and feature caches); default ``data_root()``.
        time_limit: seconds for this target and seed, shared evenly by its fine-tuning runs (each
            stops after the round that passes its share); None for no limit.

    Returns:
        One record per (method, k): target, seed, method, k, test_acc, val_acc, steps, steps_done,
        stopped_early, seconds.

    Raises:
        ValueError: for an unknown method or a ``k`` above ``config.n_per_class``.
    """
    from tlhelpers.core.runtime import data_root, get_device
    from tlhelpers.course.finetune_data import load_finetune_data
    from tlhelpers.course.proxy_pretraining import SOURCE_CLASSES, proxy_pretrained_state
    from tlhelpers.data.preprocessing import image_transforms, stored_size, weights_preset
    from tlhelpers.models.backbones import build_classifier
    from tlhelpers.transfer.features import extract_features
    from tlhelpers.transfer.probe import sklearn_probe

    unknown = [m for m in methods if m not in METHODS]
    if unknown or max(config.shots) > config.n_per_class:
        raise ValueError(f"methods {unknown} must come from {METHODS} and shots {config.shots} be <= n_per_class "
                         f"{config.n_per_class}.")
    dev = get_device(device)
    root = Path(root) if root is not None else data_root()
    preset = weights_preset(config.arch, weights=None, image_size=config.image_size)
    train, val, test = load_finetune_data(True, stored_size(preset), target=target, n_per_class=config.n_per_class,
                                          seed=seed, progress=False)
    source_state = proxy_pretrained_state(config.arch, config.image_size, seed=seed, root=root, progress=False, **config.pretrain)
    eval_tf, train_tf = image_transforms(preset, train=False), image_transforms(preset, train=True, crop_scale=config.crop_scale)
    val_loader, test_loader = (DataLoader(d.with_transform(eval_tf), batch_size=256) for d in (val, test))

    # the whole pretrained network (its source head too), so the feature cache key is the same every run
    frozen = build_classifier(config.arch, len(SOURCE_CLASSES), weights=None).model
    frozen.load_state_dict(source_state)
    feats = {name: extract_features(frozen.eval(), config.feature_layer, DataLoader(d.with_transform(eval_tf), batch_size=256),
                                    cache_dir=root / "features", device=dev, amp=False, progress=False, model_name=config.arch)
             for name, d in (("train", train), ("val", val), ("test", test))}

    n_runs = len(config.shots) * sum(m in _STRATEGY_KEYS for m in methods)
    start, records = time.perf_counter(), []
    for k in config.shots:
        idx = subsample(train.labels, k, seed)
        ftr, ytr = feats["train"][0][idx], feats["train"][1][idx]
        for method in methods:
            t0 = time.perf_counter()
            if method in _STRATEGY_KEYS:
                limit = None
                if time_limit is not None:
                    limit = max(0.0, time_limit - (time.perf_counter() - start)) / max(1, n_runs)
                n_runs -= 1
                out = _finetune(method, config, train.subset(idx).with_transform(train_tf), (val_loader, test_loader),
                                source_state, seed, dev, limit)
            elif method == "linear_probe":
                probe = sklearn_probe(ftr, ytr, *feats["test"], C=config.probe_c)
                out = {"test_acc": probe["acc"], "val_acc": float(probe["model"].score(feats["val"][0].numpy(), feats["val"][1].numpy()))}
            else:
                out = {"test_acc": prototype_accuracy(ftr, ytr, *feats["test"]), "val_acc": prototype_accuracy(ftr, ytr, *feats["val"])}
            records.append({"target": target, "seed": seed, "method": method, "k": k, **out,
                            "seconds": round(time.perf_counter() - t0, 2)})
    return records


def run_map(targets: Iterable[str], seeds: Iterable[int], config: MapConfig = MapConfig(), **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`run_seed` over every target and seed; ``kwargs`` go to it (``methods``, ``device``, ``root``)."""
    return [r for target in targets for seed in seeds for r in run_seed(target, seed, config, **kwargs)]


def map_summary(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std of the test accuracy over seeds, per (target, method, k).

    Returns:
        One dict per cell, in target, method (:data:`METHODS` order), k order: target, method, k,
        ``test_acc_per_seed`` ({seed as str: acc}), ``mean``, ``std`` (0 with one seed).
    """
    cells: dict[tuple[str, str, int], dict[str, float]] = {}
    for r in records:
        cells.setdefault((r["target"], r["method"], int(r["k"])), {})[str(r["seed"])] = float(r["test_acc"])
    targets = list(dict.fromkeys(t for t, _, _ in cells))
    order = sorted(cells, key=lambda c: (targets.index(c[0]), METHODS.index(c[1]) if c[1] in METHODS else len(METHODS), c[2]))
    return [{"target": t, "method": m, "k": k, "test_acc_per_seed": cells[t, m, k], "mean": statistics.mean(cells[t, m, k].values()),
             "std": statistics.stdev(cells[t, m, k].values()) if len(cells[t, m, k]) > 1 else 0.0} for t, m, k in order]


def best_methods(summary: Iterable[Mapping[str, Any]], margin: float = 0.03) -> list[dict[str, Any]]:
    """The best method of every (target, k) cell, the methods it does not clearly beat, and whether it wins decisively.

    The best method (by mean) *clearly beats* another when it is ahead by at least ``margin`` in
    *every* seed, so one lucky seed cannot make a winner. A cell is decisive when the best method
    clearly beats all the others.

    Args:
        summary: what :func:`map_summary` returns.
        margin: the per-seed lead (accuracy, 0.03 = 3 points) that counts as clear.

    Returns:
        One dict per (target, k): target, k, best, runner_up, ``top`` (the best and every method it
        does not clearly beat, best first), ``min_gap`` (the smallest per-seed lead over any other
        method) and ``decisive``.
    """
    cells: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for row in summary:
        cells.setdefault((row["target"], int(row["k"])), []).append(row)
    out = []
    for (target, k), rows in cells.items():
        ranked = sorted(rows, key=lambda r: -r["mean"])
        best, others = ranked[0], ranked[1:]
        seeds = best["test_acc_per_seed"]
        leads = {o["method"]: min(seeds[s] - o["test_acc_per_seed"][s] for s in seeds) for o in others}
        top = [best["method"]] + [m for m, lead in leads.items() if lead < margin]
        out.append({"target": target, "k": k, "best": best["method"], "runner_up": others[0]["method"] if others else None,
                    "top": top, "min_gap": min(leads.values(), default=math.inf), "decisive": bool(others) and len(top) == 1})
    return out


def recommended_method(images_per_class: int, domain_distance: str) -> str | None:
    """The map's method for :func:`tlhelpers.course.recommend.recommend`'s answer (labelled target, medium compute).

    Few-shot → ``prototype``; feature extraction + linear probe → ``linear_probe``; head + last
    stage(s) → ``partial``; full fine-tuning → ``full``. None for an answer the map has no method for.
    """
    from tlhelpers.course.recommend import recommend

    name = recommend(images_per_class, domain_distance).name  # type: ignore[arg-type]
    for needle, method in (("few-shot", "prototype"), ("linear probe", "linear_probe"), ("last stage", "partial"),
                           ("full fine-tuning", "full")):
        if needle in name:
            return method
    return None


def map_markdown(summary: Sequence[Mapping[str, Any]], best: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of the map: a row per (target, k), test accuracy % (mean ± std) per method,
    the best method (bold where decisive), the methods it does not clearly beat, and what
    :func:`recommended_method` picks there.

    Args:
        summary: what :func:`map_summary` returns.
        best: what :func:`best_methods` returns for it.
    """
    methods = [m for m in METHODS if any(r["method"] == m for r in summary)]
    cell = {(r["target"], r["method"], r["k"]): r for r in summary}
    lines = ["| target | images / class | " + " | ".join(METHOD_NAMES.get(m, m) for m in methods)
             + " | best | not clearly beaten | recommend() |", "|---|---:|" + "---:|" * len(methods) + "---|---|---|"]
    for b in best:
        accs = [cell.get((b["target"], m, b["k"])) for m in methods]
        shown = ["—" if r is None else f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}" for r in accs]
        name = METHOD_NAMES.get(b["best"], b["best"])
        lines.append(f"| {b['target']} | {b['k']} | " + " | ".join(shown) + f" | {f'**{name}**' if b['decisive'] else name} | "
                     f"{', '.join(b['top'])} | {recommended_method(b['k'], b['target'])} |")
    return "\n".join(lines)


def plot_strategy_map(summary: Sequence[Mapping[str, Any]], best: Sequence[Mapping[str, Any]] | None = None,
                      chance: float = 0.1) -> Figure:
    """Test accuracy against labelled images per class: one panel per target, one line per method.

    Args:
        summary: what :func:`map_summary` returns (error bars are the std over seeds).
        best: what :func:`best_methods` returns; a decisive cell gets a star in its winner's colour.
        chance: the grey dotted chance line (0.1 for 10 classes).

    Returns:
        The matplotlib figure (closed, so it is shown once when returned to a notebook).

    Raises:
        ValueError: for an empty summary.
    """
    import matplotlib.pyplot as plt

    if not summary:
        raise ValueError("summary is empty; pass map_summary(records) of a finished run.")
    targets = list(dict.fromkeys(r["target"] for r in summary))
    shots = sorted({int(r["k"]) for r in summary})
    methods = [m for m in METHODS if any(r["method"] == m for r in summary)]
    colours = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(METHODS)}
    styles = {"scratch": ":", "linear_probe": "--", "prototype": "--", "partial": "-", "full": "-"}
    fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets) + 2.2, 3.8), sharey=True, squeeze=False)
    for ax, target in zip(axes[0], targets):
        for m in methods:
            rows = sorted((r for r in summary if r["target"] == target and r["method"] == m), key=lambda r: r["k"])
            ax.errorbar([r["k"] for r in rows], [r["mean"] for r in rows], yerr=[r["std"] for r in rows], color=colours[m],
                        linestyle=styles.get(m, "-"), marker="o", markersize=4, capsize=3, label=METHOD_NAMES.get(m, m))
        for cell in best or ():
            if cell["target"] == target and cell["decisive"]:
                top = next(r for r in summary if (r["target"], r["method"], r["k"]) == (target, cell["best"], cell["k"]))
                ax.plot(cell["k"], min(1.0, top["mean"] + top["std"] + 0.05), marker="*", markersize=12,
                        color=colours[cell["best"]], linestyle="none")
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(shots, [f"all ({k})" if k == shots[-1] and len(shots) > 1 else str(k) for k in shots])
        ax.minorticks_off()
        ax.set_ylim(0, min(1.05, max(r["mean"] + r["std"] for r in summary) + 0.12))
        ax.set_xlabel("labelled images per class")
        ax.set_title(f"{target} target")
    axes[0][0].set_ylabel("test accuracy (mean ± std over seeds)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="grey", linestyle=":"))
    labels.append("chance")
    if any(cell["decisive"] for cell in best or ()):
        handles.append(plt.Line2D([], [], color="black", marker="*", linestyle="none"))
        labels.append("decisive winner (every seed)")
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.80, 0.5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.80, 1))
    plt.close(fig)
    return fig


__all__ = ["METHODS", "METHOD_NAMES", "MapConfig", "best_methods", "map_markdown", "map_summary", "plot_strategy_map", "prototype_accuracy",
           "recommended_method", "run_map", "run_seed", "subsample", "train_steps"]
