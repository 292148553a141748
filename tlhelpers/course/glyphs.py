"""Random stroke alphabets: the reduced-mode stand-in for Omniglot (few-shot learning).

Every class is a character made of a few random strokes (cubic Bezier curves), fixed per class.
Characters are grouped into alphabets of 20 that share a stroke style: how many strokes, how
curved, how thick, and whether stroke ends snap to a coarse grid. Each drawing of a character
re-renders it with control-point noise, its own pen thickness and a small affine jitter, like
the 20 people who drew each Omniglot character.

Images are 1-channel uint8 with **dark strokes on a white background**, as Omniglot's PNGs.
"""

from __future__ import annotations

import numpy as np
import torch

from tlhelpers.data.tensor_dataset import ImageTensorDataset

CHARS_PER_ALPHABET = 20
_CURVE_STEPS = 12  # points sampled along each Bezier stroke
_SUPERSAMPLE = 2  # drawn at twice the size then reduced, for anti-aliased strokes


def _alphabet_style(rng: np.random.Generator) -> dict[str, float]:
    return {
        "min_strokes": float(rng.integers(2, 4)),
        "max_strokes": float(rng.integers(3, 6)),
        "curviness": float(rng.uniform(0.0, 0.9)),
        "thickness": float(rng.uniform(0.05, 0.09)),  # as a fraction of the image side
        "grid": float(rng.random() < 0.5),
    }


def _character(rng: np.random.Generator, style: dict[str, float]) -> np.ndarray:
    """Return the control points of one character, ``(strokes, 4, 2)`` in [-1, 1]."""
    lo = int(style["min_strokes"])
    n_strokes = int(rng.integers(lo, max(lo, int(style["max_strokes"])) + 1))
    strokes = []
    start = rng.uniform(-0.7, 0.7, 2)
    for _ in range(n_strokes):
        # Strokes often start where the previous one ended, as in handwriting.
        if rng.random() < 0.5:
            start = rng.uniform(-0.7, 0.7, 2)
        end = rng.uniform(-0.7, 0.7, 2)
        while np.linalg.norm(end - start) < 0.5:
            end = rng.uniform(-0.7, 0.7, 2)
        if style["grid"]:
            start, end = np.round(start / 0.7) * 0.7, np.round(end / 0.7) * 0.7
            if np.allclose(start, end):
                end = -start if np.any(start) else np.array([0.7, 0.0])
        direction = end - start
        normal = np.array([-direction[1], direction[0]])
        bend = rng.normal(0, style["curviness"], 2)
        p1 = start + direction / 3 + normal * bend[0]
        p2 = start + 2 * direction / 3 + normal * bend[1]
        strokes.append(np.stack([start, p1, p2, end]))
        start = end
    return np.clip(np.stack(strokes), -1, 1)


def _bezier(points: np.ndarray) -> np.ndarray:
    """Sample cubic Beziers ``(..., 4, 2)`` at ``_CURVE_STEPS`` points: ``(..., steps, 2)``."""
    t = np.linspace(0, 1, _CURVE_STEPS)[:, None]
    p0, p1, p2, p3 = (points[..., k, None, :] for k in range(4))
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + t ** 3 * p3


def _draw(character: np.ndarray, style: dict[str, float], n: int, size: int,
          rng: np.random.Generator) -> np.ndarray:
    """Render ``n`` jittered drawings of one character: uint8 ``(n, size, size)``."""
    from PIL import Image, ImageDraw

    big = size * _SUPERSAMPLE
    noisy = character[None] + rng.normal(0, 0.07, (n, *character.shape))
    angle = np.deg2rad(rng.uniform(-10, 10, n))
    scale = rng.uniform(0.85, 1.05, n)
    shift = rng.uniform(-0.08, 0.08, (n, 2))
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)  # (n, 2, 2)
    curves = _bezier(noisy)  # (n, strokes, steps, 2)
    curves = np.einsum("nij,nskj->nski", rot, curves) + shift[:, None, None, :]
    pixels = (curves * 0.45 + 0.5) * big  # [-1, 1] -> most of the canvas
    widths = np.maximum(1, np.round(style["thickness"] * big * rng.uniform(0.7, 1.3, n)))
    out = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        canvas = Image.new("L", (big, big), 255)
        draw = ImageDraw.Draw(canvas)
        w = int(widths[i])
        for stroke in pixels[i]:
            draw.line([tuple(p) for p in stroke.tolist()], fill=0, width=w, joint="curve")
            for end in (stroke[0], stroke[-1]):  # round pen ends
                r = w / 2
                draw.ellipse([end[0] - r, end[1] - r, end[0] + r, end[1] + r], fill=0)
        out[i] = np.asarray(canvas.reduce(_SUPERSAMPLE))
    return out


def make_glyphs(
    n_classes: int = 200, n_per_class: int = 20, image_size: int = 28, seed: int = 0
) -> ImageTensorDataset:
    """Generate random stroke characters grouped into alphabets (an offline Omniglot).

    Classes ``20a .. 20a + 19`` form alphabet ``a``. Items are grouped by class (all drawings of
    class 0, then class 1, ...), the layout episodic samplers expect. Everything depends only on
    ``seed``: the same seed gives identical tensors, and the first ``k`` classes are the same
    whatever ``n_classes`` is.

    Args:
        n_classes: number of characters.
        n_per_class: drawings per character.
        image_size: height and width in pixels (at least 12).
        seed: base seed.

    Returns:
        1-channel uint8 images, dark strokes on white; classes named ``"alphabet03/char017"``.

    Shape:
        images: ``(n_classes * n_per_class, 1, image_size, image_size)``.

    Raises:
        ValueError: if a count is below 1 or ``image_size`` is below 12.
    """
    if n_classes < 1 or n_per_class < 1:
        raise ValueError(f"n_classes={n_classes} and n_per_class={n_per_class} must be at least 1.")
    if image_size < 12:
        raise ValueError(f"image_size={image_size} is too small for strokes; use 12 or more.")
    n_alphabets = -(-n_classes // CHARS_PER_ALPHABET)
    styles = [_alphabet_style(np.random.default_rng([seed, 0, a])) for a in range(n_alphabets)]
    images = np.empty((n_classes * n_per_class, image_size, image_size), dtype=np.uint8)
    names = []
    for c in range(n_classes):
        a, k = divmod(c, CHARS_PER_ALPHABET)
        character = _character(np.random.default_rng([seed, 1, c]), styles[a])
        rng = np.random.default_rng([seed, 2, c])
        images[c * n_per_class:(c + 1) * n_per_class] = _draw(character, styles[a], n_per_class,
                                                              image_size, rng)
        names.append(f"alphabet{a:02d}/char{k:03d}")
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    return ImageTensorDataset(torch.from_numpy(images).unsqueeze(1), labels, names)
