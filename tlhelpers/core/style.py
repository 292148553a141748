"""The course's house style for plots: one colour per method, one line style per split, readable axes.

Every plotting function of ``tlhelpers`` draws with these helpers, so a method keeps its colour
from chapter to chapter, a training curve is always dashed and a validation curve solid, integer
axes get integer ticks, short curves get markers, and a chance line appears wherever chance
matters. Plotting functions return a closed ``Figure`` (see :func:`finish`): the notebook shows it
once, as the value of the cell or through ``display``.

Example:
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> _ = ax.plot([1, 2, 3], [0.2, 0.5, 0.7], **line_style("maml", split="val", points=3))
    >>> integer_ticks(ax, "x"); chance_line(ax, 0.2); legend_outside(ax)
    >>> fig = finish(fig)
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Fixed colours of the methods the course compares (colour-blind-safe Okabe-Ito palette first).
METHOD_COLOURS: dict[str, str] = {
    # chapter 1 strategies, by key and by name
    "a": "#0072B2", "head only": "#0072B2",
    "b": "#E69F00", "head + last stage": "#E69F00", "partial": "#E69F00",
    "c": "#009E73", "full, discriminative LR": "#009E73", "full": "#009E73",
    "d": "#D55E00", "from scratch": "#D55E00", "scratch": "#D55E00",
    # frozen features
    "linear_probe": "#56B4E9", "linear probe": "#56B4E9", "linear": "#56B4E9",
    "prototype": "#CC79A7", "nearest prototype": "#CC79A7",
    # domain adaptation
    "source_only": "#D55E00", "source only": "#D55E00", "dann": "#0072B2", "DANN": "#0072B2",
    "mmd": "#009E73", "MMD": "#009E73", "oracle": "#999999",
    # few-shot
    "protonet": "#0072B2", "ProtoNet": "#0072B2", "maml": "#E69F00", "MAML": "#E69F00",
    "fomaml": "#F0E442", "FOMAML": "#F0E442", "reptile": "#009E73", "Reptile": "#009E73",
    "pixels": "#999999", "raw pixels": "#999999",
    # weights
    "pretrained": "#0072B2", "random": "#999999",
    # targets and domains
    "near": "#0072B2", "far": "#D55E00", "source": "#0072B2", "target": "#D55E00",
}
_FALLBACK = ("#332288", "#117733", "#44AA99", "#88CCEE", "#DDCC77", "#CC6677", "#AA4499", "#882255")
#: Line style of each data split: training dashed, evaluation solid.
SPLIT_STYLES: dict[str, str] = {"train": "--", "val": "-", "test": "-", "query": "-", "support": ":"}
#: Curves with at most this many points get a marker on every point.
SHORT_CURVE = 12
#: Text sizes: titles of image tiles, axes labels and titles.
TILE_TITLE_SIZE = 8
LABEL_SIZE = 10


def method_colour(name: str) -> str:
    """The colour of a method (or split, target, weights) name; unknown names get a stable colour of their own."""
    if name in METHOD_COLOURS:
        return METHOD_COLOURS[name]
    key = name.split(" (")[0].strip()
    if key in METHOD_COLOURS:
        return METHOD_COLOURS[key]
    digest = int(hashlib.sha1(name.encode()).hexdigest(), 16)
    return _FALLBACK[digest % len(_FALLBACK)]


def line_style(method: str, split: str = "val", points: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``ax.plot``: the method's colour, the split's line style, markers on short curves.

    Args:
        method: method name (see :data:`METHOD_COLOURS`); also used as the label.
        split: ``"train"`` (dashed), ``"val"``/``"test"`` (solid), ...
        points: number of points of the curve; ``SHORT_CURVE`` or fewer get markers.
    """
    style: dict[str, Any] = {"color": method_colour(method), "linestyle": SPLIT_STYLES.get(split, "-")}
    if points is not None and points <= SHORT_CURVE:
        style.update(marker="o", markersize=4)
    return style


def integer_ticks(ax: Any, axis: str = "x") -> None:
    """Only whole numbers as ticks on ``axis`` (``"x"``, ``"y"`` or ``"both"``): epochs, shots, steps."""
    from matplotlib.ticker import MaxNLocator

    for name in ("x", "y") if axis == "both" else (axis,):
        getattr(ax, f"{name}axis").set_major_locator(MaxNLocator(integer=True))


def chance_line(ax: Any, chance: float, label: str = "chance") -> None:
    """A grey dashed horizontal line at the accuracy of guessing (same units as the y axis)."""
    ax.axhline(chance, color="#666666", linestyle=":", linewidth=1.2, label=label, zorder=0)


def legend_outside(ax: Any, **kwargs: Any) -> None:
    """The legend to the right of the axes, where it hides no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8, **kwargs)


def finish(fig: Figure) -> Figure:
    """Lay out ``fig``, close it (so the inline backend does not show it a second time) and return it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    plt.close(fig)
    return fig


__all__ = [
    "LABEL_SIZE", "METHOD_COLOURS", "SHORT_CURVE", "SPLIT_STYLES", "TILE_TITLE_SIZE", "chance_line", "finish",
    "integer_ticks", "legend_outside", "line_style", "method_colour",
]
