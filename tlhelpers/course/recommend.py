"""Which transfer-learning technique when: a rule of thumb as a function, and the chart it draws.

The rules condense chapters 1-4: how many labelled target images per class you have, how far the
target domain is from the pretraining data, whether the target has labels at all, and how much
compute you can spend. They are starting points to try first, not laws.

Part of them is measured: chapter 5's strategy map (:mod:`tlhelpers.course.strategy_map`,
``benchmarks/results/strategy_map_reduced.json``) ran five methods at 1, 5, 20 and 100 labelled
images per class on a near and a far target (reduced mode, 3 seeds), and the rules for that region
follow it. On the near target the linear probe on frozen features beat both fine-tuning methods by
at least 5.7 points in every seed at 20 and at 100 images per class (the old rule fine-tuned the
last stage from 50 per class on). On the far target with 5 and 20 per class, fine-tuning the head
and last stage was best on average and full fine-tuning never clearly beat it (the old rule said
full fine-tuning for any far target above 5 per class). More than 100 images per class, a
``"medium"`` distance, unlabelled targets and the compute levels were not measured: those rules
are the usual rules of thumb.

Example:
    >>> recommend(images_per_class=20, domain_distance="near").name
    'feature extraction + linear probe'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Distance = Literal["near", "medium", "far"]
Compute = Literal["low", "medium", "high"]
_DISTANCES: tuple[str, ...] = ("near", "medium", "far")
_COMPUTE: tuple[str, ...] = ("low", "medium", "high")


@dataclass(frozen=True)
class Recommendation:
    """A technique to try first, why, and the chapter that teaches it."""

    name: str
    reason: str
    chapter: str


def recommend(
    images_per_class: int,
    domain_distance: Distance = "near",
    target_labelled: bool = True,
    compute: Compute = "medium",
) -> Recommendation:
    """Suggest a transfer-learning technique to try first.

    With labelled target images and ``compute="medium"`` or ``"high"``: 5 or fewer per class →
    few-shot (prototypes); near domain, up to 100 per class → linear probe on frozen features;
    near or medium domain below 500, far domain below 100 → head + last stage(s); otherwise full
    fine-tuning with discriminative learning rates. ``compute="low"`` → linear probe from 6 per
    class on. The near and far rules up to 100 per class follow chapter 5's measured map.

    Args:
        images_per_class: labelled target images per class (ignored when ``target_labelled`` is
            False).
        domain_distance: how different the target images look from the pretraining data:
            ``"near"`` (photos to photos), ``"medium"`` (photos to paintings, product shots) or
            ``"far"`` (photos to X-rays, satellite, digits).
        target_labelled: False when the target domain has no labels at all (but a labelled
            source domain with the same classes exists).
        compute: the training budget: ``"low"`` (a CPU, minutes), ``"medium"`` (one GPU, an hour),
            ``"high"`` (several GPU hours).

    Returns:
        The :class:`Recommendation`.

    Raises:
        ValueError: for an unknown distance or compute level, or a negative image count.
    """
    if domain_distance not in _DISTANCES:
        raise ValueError(f"domain_distance={domain_distance!r} is unknown; use one of {', '.join(_DISTANCES)}.")
    if compute not in _COMPUTE:
        raise ValueError(f"compute={compute!r} is unknown; use one of {', '.join(_COMPUTE)}.")
    if images_per_class < 0:
        raise ValueError(f"images_per_class={images_per_class} must be >= 0.")
    if not target_labelled:
        return Recommendation(
            "unsupervised domain adaptation (DANN or MMD)",
            "no target labels: align source and target features while training on labelled source data",
            "3",
        )
    if images_per_class <= 5:
        return Recommendation(
            "few-shot learning (prototypes, or a linear head on frozen features)",
            "a handful of examples per class: compare against class prototypes in a learned metric space",
            "4",
        )
    # measured up to 100 per class (strategy map): near, the probe beat partial and full fine-tuning
    if compute == "low" or (images_per_class <= 100 and domain_distance == "near"):
        return Recommendation(
            "feature extraction + linear probe",
            "little data or compute, and pretrained features already fit the domain: extract once, train a linear head",
            "2",
        )
    # measured: far with 5-20 per class, the last stage alone adapted as well as every layer did
    if images_per_class < (100 if domain_distance == "far" else 500):
        return Recommendation(
            "fine-tune the head and the last stage(s)",
            "moderate data, or a distant domain with few labels: adapt the task-specific upper layers, "
            "keep generic lower layers frozen",
            "1",
        )
    return Recommendation(
        "full fine-tuning with discriminative learning rates",
        "plenty of data, or a distant domain with 100+ images per class: every layer must adapt, lower layers more gently",
        "1",
    )


def decision_chart(compute: Compute = "medium") -> Figure:
    """Draw :func:`recommend` over (images per class × domain distance); return the Figure.

    Dashed boxes mark what chapter 5's strategy map measured (1-100 labelled images per class,
    near and far domains); everything outside them is a rule of thumb.

    Args:
        compute: the compute level the chart assumes.

    Returns:
        The matplotlib figure (closed, so a notebook shows it once as the cell's value).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from tlhelpers.core.style import finish

    counts = np.unique(np.round(np.logspace(0, 4, 121)).astype(int))
    names: list[str] = []
    grid = np.zeros((len(_DISTANCES), len(counts)), dtype=int)
    for i, distance in enumerate(_DISTANCES):
        for j, n in enumerate(counts):
            name = recommend(int(n), distance, compute=compute).name  # type: ignore[arg-type]
            if name not in names:
                names.append(name)
            grid[i, j] = names.index(name)
    colours = ["#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3"][: len(names)]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.pcolormesh(counts, np.arange(len(_DISTANCES)), grid, cmap=ListedColormap(colours),
                  vmin=-0.5, vmax=len(colours) - 0.5, shading="nearest")
    ax.set_xscale("log")
    ax.set_yticks(range(len(_DISTANCES)), [f"{d} domain" for d in _DISTANCES])
    for row in (_DISTANCES.index("near"), _DISTANCES.index("far")):
        ax.add_patch(plt.Rectangle((0.95, row - 0.45), 105 - 0.95, 0.9, fill=False, linestyle="--", linewidth=1.2))
    ax.set_xlabel("labelled target images per class\n(dashed: measured by the strategy map, reduced mode; elsewhere: rule of thumb)")
    ax.set_title(f"What to try first (compute: {compute}); no target labels at all → domain adaptation (ch. 3)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.38), ncol=2, fontsize=8, frameon=False)
    return finish(fig)
