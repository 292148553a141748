"""A few labelled target images after adaptation: how much does the unsupervised stage save?

Step 4 of the chapter's recipe, read as *semi-supervised* adaptation: once a model has been
trained (source-only, or DANN with unlabelled target images), label ``k`` target images per class,
fine-tune on them and score the target test set. Drawing accuracy against ``k`` for both starting
points shows what the unsupervised stage is worth in labels: if DANN with ``k = 1`` matches
source-only with ``k = 10``, adaptation saved nine labelled images per class
(:func:`labels_saved`).

The protocol, identical for every starting point:

- the input model is never modified: each repeat fine-tunes a fresh ``copy.deepcopy``;
- ``k`` images per class come from :func:`tlhelpers.data.balanced.balanced_indices` with seed
  ``seed + repeat``, so every starting point gets the *same* labelled images, and repeats get
  different ones (with one seed the images of a smaller ``k`` are among those of a larger one);
- fine-tuning trains **all layers** with AdamW at a small learning rate and plain cross-entropy
  on the class logits (for a :class:`tlhelpers.domain.dann.DANN`, its ``classifier``: the
  discriminator takes no part). All layers, because the point of target labels is to move the
  features towards the target domain too; a small rate, because ``k x classes`` images overfit
  quickly and a large step would erase what the first stage learned;
- the network stays in **eval mode** while it is fine-tuned: BatchNorm keeps the running
  statistics of the first stage (a batch of 10 images cannot estimate them, and replacing them
  would mix a normalisation effect into what labels add) and dropout is off, so a run is
  deterministic given its images;
- ``k = 0`` is the model as it is.

Example:
    >>> curves = few_label_curve({"source_only": so.model, "dann": dann.model}, pair, ks=(0, 1, 5, 10))
    >>> fig = plot_few_label_curve(curves, chance=0.1)
    >>> labels_saved(curves)   # e.g. {0: 5, 1: 10, 5: None, 10: None}
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tlhelpers.core.runtime import get_device
from tlhelpers.data.balanced import balanced_indices
from tlhelpers.training.engine import evaluate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The numbers of labelled target images per class the chapter compares.
DEFAULT_KS = (0, 1, 5, 10)


@dataclass
class FewLabelResult:
    """Target test accuracy after fine-tuning on ``k`` labelled target images per class.

    Attributes:
        k: labelled images per class (0: the model as it is).
        accs: test accuracy of each repeat, in [0, 1] (one value for ``k = 0``: there is nothing to draw).
        indices: for each repeat, the indices into the target training set of the images used
            (empty for ``k = 0``).
    """

    k: int
    accs: list[float]
    indices: list[Tensor] = field(default_factory=list, repr=False)

    @property
    def acc(self) -> float:
        """Mean test accuracy over the repeats."""
        return sum(self.accs) / len(self.accs)

    @property
    def ci95(self) -> float:
        """Half-width of the 95 % interval of the mean over repeats; 0.0 with a single value."""
        if len(self.accs) < 2:
            return 0.0
        from tlhelpers.fewshot.evaluation import confidence_interval

        return confidence_interval(self.accs)[1]


def _labels(dataset: Any) -> Tensor:
    """The class index of every item: ``dataset.labels`` when it has them, else read item by item."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [int(dataset[i][1]) for i in range(len(dataset))]
    return torch.as_tensor(labels, dtype=torch.int64).flatten()


def _num_classes(dataset: Any, labels: Tensor) -> int:
    n = getattr(dataset, "num_classes", None)
    return int(n) if n is not None else int(labels.max()) + 1 if len(labels) else 0


def _check_k(k: Any, counts: Tensor) -> None:
    """Raise the one-line error for a ``k`` that is not a whole number in ``[0, smallest class]``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k={k!r} must be a whole number of labelled images per class, e.g. 5.")
    k = int(k)
    if k < 0:
        raise ValueError(f"k={k} is negative; use k >= 0 labelled images per class (0: no fine-tuning).")
    if counts.numel() == 0:
        raise ValueError("target_train holds no labelled images; pass the target training set, e.g. pair.target_train.")
    smallest, cls = int(counts.min()), int(counts.argmin())
    if k > smallest:
        raise ValueError(
            f"k={k} is larger than class {cls}, which has {smallest} target training images; use k <= {smallest}."
        )


def _gather(dataset: Any, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
    """The items at ``indices`` as one batch of inputs and one of labels (through ``__getitem__``)."""
    items = [dataset[int(i)] for i in indices]
    x = torch.stack([torch.as_tensor(item[0]) for item in items])
    y = torch.tensor([int(item[1]) for item in items], dtype=torch.int64)
    return x, y


def _class_path(model: nn.Module) -> nn.Module:
    """The module whose output is the class logits: a DANN's ``classifier``, else the model itself."""
    from tlhelpers.domain.dann import DANN

    return model.classifier if isinstance(model, DANN) else model


def _accuracy(model: nn.Module, test: tuple[Tensor, Tensor], device: torch.device, batch_size: int = 256) -> float:
    x, y = test
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
    return evaluate(model, batches, device=device)["acc"]


def _finetune(
    model: nn.Module, x: Tensor, y: Tensor, *, num_epochs: int, lr: float, weight_decay: float,
    batch_size: int, seed: int, device: torch.device, head_only: bool = False,
) -> nn.Module:
    """Fine-tune a copy of ``model`` on ``(x, y)`` in eval mode (see the module docstring); return the copy."""
    net = _class_path(copy.deepcopy(model)).to(device)
    net.requires_grad_(not head_only)
    if head_only:  # the last Linear layer is the head
        head = [m for m in net.modules() if isinstance(m, nn.Linear)]
        if not head:
            raise ValueError(f"{type(net).__name__} has no nn.Linear layer to train; use head_only=False.")
        head[-1].requires_grad_(True)
    net.eval()  # running BatchNorm statistics kept, dropout off
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    x, y = x.to(device), y.to(device)
    with torch.enable_grad():
        for _ in range(num_epochs):
            order = torch.randperm(len(y), generator=generator).to(device)
            for start in range(0, len(y), batch_size):
                batch = order[start : start + batch_size]
                loss = F.cross_entropy(net(x[batch]), y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return net


def few_label_finetune(
    model: nn.Module,
    target_train: Any,
    target_test: Any,
    k: int,
    *,
    num_epochs: int = 15,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 16,
    seed: int = 0,
    repeats: int = 1,
    device: str | torch.device | None = None,
    progress: bool = False,
    head_only: bool = False,
) -> FewLabelResult:
    """Fine-tune a copy of ``model`` on ``k`` labelled target images per class; score the target test set.

    Each repeat ``r`` draws its images with :func:`tlhelpers.data.balanced.balanced_indices` and seed
    ``seed + r`` (also the seed of its shuffles), then trains all layers of a fresh copy for
    ``num_epochs`` passes over the ``k x classes`` images with AdamW and cross-entropy on the class
    logits, in eval mode (BatchNorm statistics of the first stage kept, dropout off; see the module
    docstring for why). ``model`` itself is never changed.

    Args:
        model: the starting point, e.g. ``train_method("dann", ...).model``; its ``model(x)`` gives class
            logits (a :class:`tlhelpers.domain.dann.DANN` is fine-tuned through its ``classifier``).
        target_train: labelled target images to draw from (``(x, y)`` items, e.g. ``pair.target_train``).
        target_test: the target test set.
        k: labelled images per class; 0 scores the model as it is (no copy is trained, one value).
        num_epochs: passes over the labelled images (a larger ``k`` also gets more steps).
        lr: AdamW learning rate (small: the start is already trained).
        weight_decay: AdamW weight decay.
        batch_size: images per step.
        seed: seed of the first repeat's draw; the same seed gives every starting point the same images.
        repeats: independent draws of the ``k`` images (for error bars).
        device: see :func:`tlhelpers.core.runtime.get_device`.
        progress: print one line per repeat.
        head_only: train only the last ``nn.Linear`` layer (the class head), the rest frozen: fewer
            parameters to overfit a handful of images with.

    Returns:
        The :class:`FewLabelResult`: accuracy per repeat, their mean, and the indices used.

    Raises:
        ValueError: if ``k < 0``, ``k`` exceeds the smallest class of ``target_train``, or
            ``repeats``, ``num_epochs`` or ``batch_size`` is below 1.
    """
    for name, value in (("repeats", repeats), ("num_epochs", num_epochs), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name}={value} must be at least 1.")
    labels = _labels(target_train)
    counts = torch.bincount(labels, minlength=_num_classes(target_train, labels))
    _check_k(k, counts)
    k = int(k)
    dev = get_device(device)
    test = _gather(target_test, range(len(target_test)))
    if k == 0:
        return FewLabelResult(0, [_accuracy(copy.deepcopy(model), test, dev)], [])
    accs, used = [], []
    for r in range(repeats):
        idx = balanced_indices(labels, k * len(counts), seed=seed + r)
        x, y = _gather(target_train, idx)
        net = _finetune(model, x, y, num_epochs=num_epochs, lr=lr, weight_decay=weight_decay,
                        batch_size=batch_size, seed=seed + r, device=dev, head_only=head_only)
        accs.append(_accuracy(net, test, dev))
        used.append(idx)
        if progress:
            print(f"k={k} repeat {r + 1}/{repeats}: target test accuracy {accs[-1]:.3f}")
    return FewLabelResult(k, accs, used)


def _target_sets(pair_or_sets: Any) -> tuple[Any, Any]:
    if hasattr(pair_or_sets, "target_train") and hasattr(pair_or_sets, "target_test"):
        return pair_or_sets.target_train, pair_or_sets.target_test
    if isinstance(pair_or_sets, (tuple, list)) and len(pair_or_sets) == 2:
        return pair_or_sets[0], pair_or_sets[1]
    raise ValueError(
        f"expected a DomainPair or a (target_train, target_test) tuple, got {type(pair_or_sets).__name__}."
    )


def few_label_curve(
    models: Mapping[str, nn.Module], pair_or_sets: Any, ks: Sequence[int] = DEFAULT_KS, **kw: Any
) -> dict[str, list[FewLabelResult]]:
    """Target test accuracy against ``k`` for each starting point, every one on the same labelled images.

    Args:
        models: starting points by name, e.g. ``{"source_only": ..., "dann": ...}`` (the names colour the plot).
        pair_or_sets: a :class:`tlhelpers.course.domain_pairs.DomainPair` or a ``(target_train, target_test)`` tuple.
        ks: labelled images per class, in the order to report them (0: the model as it is).
        **kw: passed to :func:`few_label_finetune` (``num_epochs``, ``lr``, ``seed``, ``repeats``, ...).

    Returns:
        ``{name: [FewLabelResult for each k]}``, in the order of ``models`` and ``ks``.

    Raises:
        ValueError: if ``models`` or ``ks`` is empty, or a ``k`` is invalid (checked before any training).
    """
    if not models:
        raise ValueError("models is empty; pass starting points by name, e.g. {'source_only': m1, 'dann': m2}.")
    if not ks:
        raise ValueError("ks is empty; pass labelled images per class, e.g. (0, 1, 5, 10).")
    target_train, target_test = _target_sets(pair_or_sets)
    labels = _labels(target_train)
    counts = torch.bincount(labels, minlength=_num_classes(target_train, labels))
    for k in ks:
        _check_k(k, counts)
    return {
        name: [few_label_finetune(model, target_train, target_test, k, **kw) for k in ks]
        for name, model in models.items()
    }


def labels_saved(
    curves: Mapping[str, Sequence[FewLabelResult]],
    reference: str = "source_only",
    adapted: str = "dann",
    *,
    tolerance: float = 0.0,
) -> dict[int, int | None]:
    """How many labels adaptation saves: the reference's ``k'`` that matches the adapted model at each ``k``.

    For each ``k`` of the ``adapted`` curve, the smallest ``k'`` of the ``reference`` curve whose mean
    accuracy reaches the adapted one (``>= acc - tolerance``), or None when no ``k'`` measured does.
    ``{1: 10}`` reads "DANN with 1 label per class is as good as source-only with 10": the
    unsupervised stage saved 9 labelled images per class. ``{5: None}``: source-only never got there
    within the ``k'`` measured. Only measured ``k'`` count (no interpolation).

    Args:
        curves: the result of :func:`few_label_curve`.
        reference: name of the curve to match (the starting point without adaptation).
        adapted: name of the curve whose accuracies are to be matched.
        tolerance: accuracy (in [0, 1]) the reference may fall short by and still count as matching.

    Returns:
        ``{k: k' or None}`` in the order of the adapted curve.

    Raises:
        ValueError: if ``reference`` or ``adapted`` is not a key of ``curves``.
    """
    for role, name in (("reference", reference), ("adapted", adapted)):
        if name not in curves:
            raise ValueError(f"unknown {role} curve {name!r}; curves has {', '.join(map(repr, curves)) or 'none'}.")
    saved: dict[int, int | None] = {}
    for result in curves[adapted]:
        matches = [r.k for r in curves[reference] if r.acc >= result.acc - tolerance]
        saved[result.k] = min(matches) if matches else None
    return saved


def plot_few_label_curve(curves: Mapping[str, Sequence[FewLabelResult]], *, chance: float | None = None) -> Figure:
    """Target test accuracy against labelled images per class, one line per starting point.

    Error bars (95 % interval over repeats) are drawn where a point has more than one repeat.

    Args:
        curves: the result of :func:`few_label_curve`.
        chance: draw the chance line at this accuracy (e.g. ``0.1`` for ten classes).

    Returns:
        The figure (closed, shown once as a cell's value).
    """
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import (
        LABEL_SIZE,
        chance_line,
        finish,
        integer_ticks,
        legend_outside,
        line_style,
    )

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, results in curves.items():
        ks = [r.k for r in results]
        style = line_style(name, split="test", points=len(ks))
        ax.plot(ks, [r.acc for r in results], label=name, **style)
        spreads = [r.ci95 for r in results]
        if any(s > 0 or len(r.accs) > 1 for s, r in zip(spreads, results)):
            ax.errorbar(ks, [r.acc for r in results], yerr=spreads, fmt="none", ecolor=style["color"], capsize=3)
    if chance is not None:
        chance_line(ax, chance)
    ax.set_xlabel("labelled target images per class (k)", fontsize=LABEL_SIZE)
    ax.set_ylabel("target test accuracy", fontsize=LABEL_SIZE)
    ax.set_title("Fine-tuning with a few target labels")
    ax.grid(alpha=0.3)
    integer_ticks(ax, "x")
    legend_outside(ax)
    return finish(fig)


__all__ = ["DEFAULT_KS", "FewLabelResult", "few_label_curve", "few_label_finetune", "labels_saved", "plot_few_label_curve"]
