"""Procedural "shapes" images: the reduced-mode stand-in for a natural-image classification task.

Each class is a shape kind with a fill texture ("striped circle", "dotted hexagon"). Every image
draws one shape at a random position, scale and rotation, with random colours, on a noisy
background with a colour gradient, so a classifier has to learn outlines and textures rather than
colours or pixel positions.

The 20 classes form two tasks that share low-level structure (edges, corners, curves, periodic
textures) but not classes:

- classes 0-9: circle, square, triangle, star, cross, each solid or striped;
- classes 10-19: ring, hexagon, diamond, crescent, half-disk, each dotted or checkered.

Pretraining on 10-19 and fine-tuning on 0-9 therefore shows transfer between related tasks.

``style="fine"`` draws the same shapes with other low-level statistics: every fill becomes a
high-frequency texture with a period of 2-3 pixels (a solid class gets fine checks, a striped class
fine stripes), far finer than any texture of the plain style (5-10 pixels a period at 32 px). It is
the *far* target of chapter 1: same outlines, textures the pretrained filters never had to tell apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from tlhelpers.data.tensor_dataset import ImageTensorDataset

_KINDS_A = ("circle", "square", "triangle", "star", "cross")
_KINDS_B = ("ring", "hexagon", "diamond", "crescent", "half-disk")
_FILLS_A = ("solid", "striped")
_FILLS_B = ("dotted", "checkered")
_SPLITS = {"train": 0, "val": 1, "test": 2}
#: Drawing styles; the index keys each style's random stream ("plain" keeps its historical stream).
STYLES: tuple[str, ...] = ("plain", "fine")
_FINE_NAMES = {"solid": "fine-checkered", "striped": "fine-striped"}

#: (kind, fill) of each class id, 0..19.
CLASS_SPECS: tuple[tuple[str, str], ...] = tuple(
    (kind, fill) for kinds, fills in ((_KINDS_A, _FILLS_A), (_KINDS_B, _FILLS_B))
    for kind in kinds for fill in fills
)
#: Human-readable class names, e.g. ``"striped circle"``.
CLASS_NAMES: tuple[str, ...] = tuple(f"{fill} {kind}" for kind, fill in CLASS_SPECS)
NUM_SHAPE_CLASSES = len(CLASS_SPECS)

Array = np.ndarray


def _polygon(u: Array, v: Array, sides: int, inradius: float) -> Array:
    inside = np.ones(u.shape, dtype=bool)
    for k in range(sides):
        a = 2 * np.pi * k / sides + np.pi / 2
        inside &= u * np.cos(a) + v * np.sin(a) <= inradius
    return inside


def _star(u: Array, v: Array) -> Array:
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    return r <= 0.42 + 0.58 * np.abs(np.cos(2.5 * theta)) ** 2


_MASKS: dict[str, Callable[[Array, Array], Array]] = {
    "circle": lambda u, v: u * u + v * v <= 0.85,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.75,
    "triangle": lambda u, v: _polygon(u, v, 3, 0.5),
    "star": _star,
    "cross": lambda u, v: (np.minimum(np.abs(u), np.abs(v)) <= 0.28)
    & (np.maximum(np.abs(u), np.abs(v)) <= 0.95),
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.4),
    "hexagon": lambda u, v: _polygon(u, v, 6, 0.85),
    "diamond": lambda u, v: np.abs(u) / 0.55 + np.abs(v) <= 1.0,
    "crescent": lambda u, v: (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + v * v >= 0.65),
    "half-disk": lambda u, v: (u * u + v * v <= 1.0) & (v >= -0.1),
}


def _fill(fill: str, u: Array, v: Array, freq: Array) -> Array:
    """Return where the second colour shows, in the shape's own (rotated) frame."""
    if fill == "solid":
        return np.zeros(u.shape, dtype=bool)
    if fill == "striped":
        return np.sin(freq * u) > 0
    if fill == "checkered":
        return np.sin(freq * u) * np.sin(freq * v) > 0
    if fill == "dotted":
        cu = np.cos(freq * u)
        cv = np.cos(freq * v)
        return cu + cv > 1.0
    raise ValueError(f"unknown fill {fill!r}")


def _fine_fill(fill: str, u: Array, v: Array, period: Array) -> Array:
    """Where the second colour shows in the fine style: checks or stripes ``period`` pixels apart."""
    su = np.sin(2 * np.pi * u / period) > 0
    if fill in ("solid", "dotted"):
        return su ^ (np.sin(2 * np.pi * v / period) > 0)
    return su


def class_name(class_id: int, style: str = "plain") -> str:
    """Name of a class in a style, e.g. ``"striped circle"`` or ``"fine-striped circle"``.

    Raises:
        ValueError: on an unknown style.
    """
    if style not in STYLES:
        raise ValueError(f"style={style!r} is unknown; use one of {', '.join(STYLES)}.")
    kind, fill = CLASS_SPECS[class_id]
    return CLASS_NAMES[class_id] if style == "plain" else f"{_FINE_NAMES.get(fill, 'fine-' + fill)} {kind}"


def _draw_class(class_id: int, n: int, size: int, rng: np.random.Generator, style: str = "plain") -> Array:
    """Draw ``n`` images of one class as float32 ``(n, size, size, 3)`` in [0, 1]."""
    kind, fill = CLASS_SPECS[class_id]
    radius = rng.uniform(0.24, 0.4, n) * size
    cx = rng.uniform(radius, size - radius)
    cy = rng.uniform(radius, size - radius)
    angle = rng.uniform(0, 2 * np.pi, n)
    aspect = rng.uniform(0.85, 1.15, n)
    freq = rng.uniform(2.5, 4.0, n) * np.pi  # 2.5-4 texture periods across the shape

    grid = np.arange(size, dtype=np.float32) + 0.5
    col = lambda a: a.astype(np.float32)[:, None, None]  # noqa: E731
    dx = (grid[None, None, :] - col(cx)) / col(radius)
    dy = (grid[None, :, None] - col(cy)) / col(radius)
    cos, sin = col(np.cos(angle)), col(np.sin(angle))
    u = (cos * dx + sin * dy) * col(aspect)
    v = (-sin * dx + cos * dy) / col(aspect)
    mask = _MASKS[kind](u, v)
    if style == "fine":
        # in pixels, in the shape's own frame, so the texture rotates with the shape
        period = col(rng.uniform(2.2, 3.0, n))
        second = _fine_fill(fill, u * col(radius) / col(aspect), v * col(radius) * col(aspect), period) & mask
    else:
        second = _fill(fill, u, v, col(freq)) & mask

    # Colours are independent of the class, so only outline and texture carry the label. Offsets
    # on the colour circle keep every channel of the background 0.3-0.4 away from the shape and
    # the second fill colour at least 0.25 away from both, so outlines never vanish.
    f32 = np.float32
    fg = rng.uniform(0.0, 1.0, (n, 1, 1, 3)).astype(f32)
    offset = rng.uniform(0.3, 0.4, (n, 1, 1, 3)).astype(f32)
    flip = np.where(rng.random((n, 1, 1, 1)) < 0.5, f32(-1), f32(1))
    bg0 = (fg + flip * offset) % 1.0
    bg1 = (fg + flip * rng.uniform(0.3, 0.4, (n, 1, 1, 3)).astype(f32)) % 1.0
    alt = (fg + flip * (offset + rng.uniform(0.25, 0.35, (n, 1, 1, 3)).astype(f32))) % 1.0
    ramp_angle = rng.uniform(0, 2 * np.pi, n)
    ramp = col(np.cos(ramp_angle)) * grid[None, None, :] + col(np.sin(ramp_angle)) * grid[None, :, None]
    ramp = (ramp / size * 0.5 + 0.5)[..., None]
    image = bg0 * (1 - ramp) + bg1 * ramp
    image = np.where(mask[..., None], fg, image)
    image = np.where(second[..., None], alt, image)
    image += rng.standard_normal(image.shape, dtype=np.float32) * f32(0.08)
    return np.clip(image, 0, 1, out=image)


def make_shapes(
    split: str = "train",
    n_per_class: int = 60,
    image_size: int = 64,
    class_ids: Sequence[int] | None = None,
    seed: int = 0,
    style: str = "plain",
) -> ImageTensorDataset:
    """Generate a shapes classification dataset (RGB, uint8).

    The images of a class depend only on ``(seed, split, class id)``, so the same seed gives
    identical tensors, another split gives other images, and a class looks the same whichever
    ``class_ids`` it is requested with. Items are shuffled (deterministically), not grouped by
    class.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``; each draws from its own random stream.
        n_per_class: images per class.
        image_size: height and width in pixels (at least 16).
        class_ids: which of the 20 classes (see ``CLASS_NAMES``), relabelled ``0..len-1`` in the
            given order; None means classes 0-9. Classes 10-19 are a related but different task.
        seed: base seed.
        style: ``"plain"`` or ``"fine"`` (every fill a 2-3 pixel texture: the far target of
            chapter 1); each style draws from its own random stream.

    Returns:
        The dataset; ``classes`` holds names like ``"striped circle"`` (``"fine-striped circle"``).

    Shape:
        images: ``(len(class_ids) * n_per_class, 3, image_size, image_size)``.

    Raises:
        ValueError: on an unknown split or style, a class id outside 0-19, a repeated class id, or sizes
            that are too small.

    Example:
        >>> ds = make_shapes("train", n_per_class=5, image_size=32)
        >>> len(ds), ds.image_shape, ds.classes[1]
        (50, (3, 32, 32), 'striped circle')
    """
    if split not in _SPLITS:
        raise ValueError(f"split={split!r} is unknown; use one of {sorted(_SPLITS)}.")
    if style not in STYLES:
        raise ValueError(f"style={style!r} is unknown; use one of {', '.join(STYLES)}.")
    if n_per_class < 1:
        raise ValueError(f"n_per_class={n_per_class} must be at least 1.")
    if image_size < 16:
        raise ValueError(f"image_size={image_size} is too small to draw shapes; use 16 or more.")
    ids = list(range(10)) if class_ids is None else [int(c) for c in class_ids]
    if not ids:
        raise ValueError("class_ids is empty; pass some of 0..19 or None for 0..9.")
    bad = [c for c in ids if not 0 <= c < NUM_SHAPE_CLASSES]
    if bad:
        raise ValueError(f"class ids {bad} are out of range; use ids in 0..{NUM_SHAPE_CLASSES - 1}.")
    if len(set(ids)) != len(ids):
        raise ValueError(f"class_ids {ids} has repeats; list each class once.")

    split_id = _SPLITS[split]
    key = [] if style == "plain" else [STYLES.index(style)]
    parts = []
    for c in ids:
        rng = np.random.default_rng([seed, split_id, c, *key])
        parts.append(_draw_class(c, n_per_class, image_size, rng, style))
    images = np.concatenate(parts)
    labels = np.repeat(np.arange(len(ids)), n_per_class)
    order = np.random.default_rng([seed, split_id, 1000]).permutation(len(labels))
    images_u8 = torch.from_numpy((images[order] * 255 + 0.5).astype(np.uint8)).permute(0, 3, 1, 2)
    return ImageTensorDataset(
        images_u8.contiguous(),
        torch.from_numpy(labels[order]).long(),
        [class_name(c, style) for c in ids],
    )
