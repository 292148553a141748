"""Which transfer-learning technique when: a rule of thumb as a function, and the chart it draws.

The rules condense chapters 1-4: how many labelled target images per class you have, how far the
target domain is from the pretraining data, whether the target has labels at all, and how much
compute you can spend. They are starting points to try first, not laws.

Example:
    >>> recommend(images_per_class=20, domain_distance="near").name
    'feature extraction + linear probe'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

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
    if compute == "low" or (images_per_class < 50 and domain_distance == "near"):
        return Recommendation(
            "feature extraction + linear probe",
            "little data or compute, and pretrained features already fit the domain: extract once, train a linear head",
            "2",
        )
    if images_per_class < 500 and domain_distance != "far":
        return Recommendation(
            "fine-tune the head and the last stage(s)",
            "moderate data: adapt the task-specific upper layers, keep generic lower layers frozen",
            "1",
        )
    return Recommendation(
        "full fine-tuning with discriminative learning rates",
        "plenty of data or a distant domain: every layer must adapt, lower layers more gently",
        "1",
    )


def decision_chart(compute: Compute = "medium") -> object:
    """Draw :func:`recommend` over (images per class × domain distance); return the Figure.

    Args:
        compute: the compute level the chart assumes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

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
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.pcolormesh(counts, np.arange(len(_DISTANCES)), grid, cmap=ListedColormap(colours),
                  vmin=-0.5, vmax=len(colours) - 0.5, shading="nearest")
    ax.set_xscale("log")
    ax.set_yticks(range(len(_DISTANCES)), [f"{d} domain" for d in _DISTANCES])
    ax.set_xlabel("labelled target images per class")
    ax.set_title(f"What to try first (compute: {compute}); no target labels at all → domain adaptation (ch. 3)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
