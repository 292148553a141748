"""Offline digit domains: printed font digits (source) and MNIST-M-style digits on photos (target).

The reduced-mode stand-in for the MNIST -> MNIST-M domain-adaptation pair. Font digits are
rendered with PIL from the TrueType fonts that matplotlib ships, then warped by a random affine
map; MNIST-M-style digits blend such digits with crops of colour photos by the recipe of Ganin &
Lempitsky (2015): each channel is ``|photo - digit|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tlhelpers.data.tensor_dataset import ImageTensorDataset

DIGIT_CLASSES = tuple(str(d) for d in range(10))
# Distinct families (sans, serif, mono, Computer Modern, STIX) and weights/slants.
_FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-BoldItalic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf",
    "cmb10.ttf",
)
_SPLITS = {"train": 0, "test": 1}
_TEMPLATE = 64  # side of the rendered glyph templates, before warping


def font_files() -> list[Path]:
    """Return the matplotlib TrueType fonts used for digits (those of ``_FONT_FILES`` present).

    Raises:
        FileNotFoundError: if matplotlib ships none of them, naming the folder searched.
    """
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = [folder / name for name in _FONT_FILES if (folder / name).is_file()]
    if not found:
        raise FileNotFoundError(f"no digit fonts in {folder}; reinstall matplotlib (pip install -U matplotlib).")
    return found


@lru_cache(maxsize=2)
def _templates(size: int = _TEMPLATE) -> Tensor:
    """Render every (font, digit) once, centred, digit height about 60% of the canvas.

    Shape:
        ``(num_fonts, 10, size, size)`` float in [0, 1], white digit on black.
    """
    from PIL import Image, ImageDraw, ImageFont

    out = []
    for path in font_files():
        font = ImageFont.truetype(str(path), size=int(size * 0.8))
        glyphs = []
        for d in DIGIT_CLASSES:
            canvas = Image.new("L", (size, size), 0)
            draw = ImageDraw.Draw(canvas)
            left, top, right, bottom = draw.textbbox((0, 0), d, font=font)
            xy = ((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top)
            draw.text(xy, d, fill=255, font=font)
            glyphs.append(np.asarray(canvas, dtype=np.float32) / 255)
        out.append(np.stack(glyphs))
    return torch.from_numpy(np.stack(out))


def _render_digits(labels: np.ndarray, image_size: int, rng: np.random.Generator) -> Tensor:
    """Warp random font templates of ``labels`` by random affine maps; uint8 ``(N, H, W)``."""
    templates = _templates()
    n = len(labels)
    fonts = rng.integers(0, templates.shape[0], n)
    src = templates[torch.from_numpy(fonts), torch.from_numpy(labels)].unsqueeze(1)

    angle = np.deg2rad(rng.uniform(-15, 15, n))
    scale = rng.uniform(1.0, 1.35, n)
    shear = rng.uniform(-0.25, 0.25, n)
    shift = rng.uniform(-0.12, 0.12, (n, 2))
    # theta maps output coordinates to template coordinates (the inverse warp)
    cos, sin = np.cos(angle), np.sin(angle)
    a = np.stack([np.stack([cos, -sin + shear * cos], -1), np.stack([sin, cos + shear * sin], -1)], 1)
    a = a / scale[:, None, None]
    theta = torch.from_numpy(np.concatenate([a, shift[:, :, None]], 2)).float()
    grid = F.affine_grid(theta, [n, 1, image_size, image_size], align_corners=False)
    # Downscale first so the warp samples a template of about the output size (less aliasing).
    if image_size * 2 <= src.shape[-1]:
        src = F.interpolate(src, size=image_size * 2, mode="area")
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out.squeeze(1).clamp_(0, 1) * 255 + 0.5).to(torch.uint8)


def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % 10).astype(np.int64)


def _check(split: str, n: int, image_size: int) -> int:
    if split not in _SPLITS:
        raise ValueError(f"split={split!r} is unknown; use one of {sorted(_SPLITS)}.")
    if n < 1:
        raise ValueError(f"n={n} must be at least 1.")
    if image_size < 8:
        raise ValueError(f"image_size={image_size} is too small for digits; use 8 or more.")
    return _SPLITS[split]


def make_font_digits(
    split: str = "train", n: int = 2000, image_size: int = 32, seed: int = 0
) -> ImageTensorDataset:
    """Generate printed digits 0-9 in several fonts with random affine jitter (the source domain).

    White digits on black, the grey value replicated to 3 channels so models built for RGB
    inputs take them unchanged. Classes are balanced (``n // 10`` or one more per digit).

    Args:
        split: ``"train"`` or ``"test"``; each draws from its own random stream.
        n: number of images.
        image_size: height and width in pixels.
        seed: base seed; the same seed and split give identical tensors.

    Returns:
        The dataset, classes ``"0"`` .. ``"9"``.

    Shape:
        images: ``(n, 3, image_size, image_size)`` uint8.

    Raises:
        ValueError: on an unknown split, ``n < 1`` or ``image_size < 8``.
    """
    split_id = _check(split, n, image_size)
    rng = np.random.default_rng([seed, split_id, 0])
    labels = _balanced_labels(n, rng)
    grey = _render_digits(labels, image_size, rng)
    images = grey.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return ImageTensorDataset(images, torch.from_numpy(labels), list(DIGIT_CLASSES))


def blend_with_photos(
    digits: Tensor, photos: Sequence[np.ndarray] | Tensor, generator: torch.Generator
) -> Tensor:
    """Blend grey digits with random crops of colour photos: ``|photo - digit|`` per channel.

    This is how MNIST-M was made from MNIST (Ganin & Lempitsky, 2015): each digit picks a photo
    and a crop position at random, and the digit's strokes invert the photo's colours.

    Args:
        digits: grey uint8 digits.
        photos: uint8 colour photos, as ``(H, W, 3)`` arrays or one ``(P, 3, H, W)`` tensor, each
            at least as large as a digit.
        generator: source of randomness for the photo and crop choice.

    Returns:
        The blended images, uint8.

    Shape:
        digits: ``(N, 1, H, W)`` or ``(N, H, W)``; returns ``(N, 3, H, W)``.

    Raises:
        ValueError: on a wrong dtype or shape, no photos, or a photo smaller than a digit.
    """
    if digits.dtype != torch.uint8:
        raise ValueError(f"digits have dtype {digits.dtype}, expected torch.uint8 grey images.")
    if digits.ndim == 4 and digits.shape[1] == 1:
        digits = digits[:, 0]
    if digits.ndim != 3:
        raise ValueError(f"digits have shape {tuple(digits.shape)}; expected (N, 1, H, W) or (N, H, W).")
    if isinstance(photos, Tensor):
        if photos.ndim != 4 or photos.shape[1] != 3:
            raise ValueError(f"photos tensor has shape {tuple(photos.shape)}; expected (P, 3, H, W).")
        chw = list(photos)
    else:
        chw = []
        for p in photos:
            arr = np.asarray(p)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"a photo has shape {arr.shape}; expected (H, W, 3) colour arrays.")
            chw.append(torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1))
    if not chw:
        raise ValueError("photos is empty; pass colour photos, e.g. sample_photos().")
    n, h, w = digits.shape
    for p in chw:
        if p.dtype != torch.uint8:
            raise ValueError(f"photos have dtype {p.dtype}; expected uint8 colour photos.")
        if p.shape[1] < h or p.shape[2] < w:
            raise ValueError(f"a photo of {tuple(p.shape[1:])} is smaller than the {h}x{w} digits; use larger photos.")

    which = torch.randint(len(chw), (n,), generator=generator)
    out = torch.empty(n, 3, h, w, dtype=torch.uint8)
    rows_base, cols_base = torch.arange(h), torch.arange(w)
    for k, photo in enumerate(chw):
        idx = (which == k).nonzero().flatten()
        if len(idx) == 0:
            continue
        y0 = torch.randint(photo.shape[1] - h + 1, (len(idx),), generator=generator)
        x0 = torch.randint(photo.shape[2] - w + 1, (len(idx),), generator=generator)
        rows = (y0[:, None] + rows_base)[:, :, None]
        cols = (x0[:, None] + cols_base)[:, None, :]
        crops = photo[:, rows, cols].permute(1, 0, 2, 3).short()  # (len, 3, h, w)
        out[idx] = (crops - digits[idx, None].short()).abs().to(torch.uint8)
    return out


def sample_photos() -> list[np.ndarray]:
    """Return colour photos shipped with scikit-learn (``china.jpg``, ``flower.jpg``); no download.

    The same images as ``sklearn.datasets.load_sample_images()``, read straight from the package
    folder because importing ``sklearn.datasets`` takes seconds.

    Returns:
        Two uint8 arrays of shape ``(427, 640, 3)``.
    """
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images"
        files = sorted(folder.glob("*.jpg"))
        if files:
            photos = []
            for f in files:
                with Image.open(f) as img:
                    photos.append(np.array(img.convert("RGB"), dtype=np.uint8))
            return photos
    from sklearn.datasets import load_sample_images

    return [np.asarray(img, dtype=np.uint8) for img in load_sample_images().images]


def make_mnistm_style(
    split: str = "train", n: int = 2000, image_size: int = 32, seed: int = 0
) -> ImageTensorDataset:
    """Generate font digits blended on photo crops: the reduced-mode MNIST-M (target domain).

    The digits are drawn from another random stream than ``make_font_digits`` with the same
    seed, so source and target images are not paired.

    Args:
        split: ``"train"`` or ``"test"``.
        n: number of images.
        image_size: height and width in pixels.
        seed: base seed; the same seed and split give identical tensors.

    Returns:
        RGB digits on photo textures, classes ``"0"`` .. ``"9"``.

    Shape:
        images: ``(n, 3, image_size, image_size)`` uint8.

    Raises:
        ValueError: on an unknown split, ``n < 1`` or ``image_size < 8``.
    """
    split_id = _check(split, n, image_size)
    rng = np.random.default_rng([seed, split_id, 1])
    labels = _balanced_labels(n, rng)
    grey = _render_digits(labels, image_size, rng)
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    photos = sample_photos()
    # Photos are about 13-20x larger than a 32 px digit; halve them so crops show some structure.
    factor = max(1, min(p.shape[0] for p in photos) // (image_size * 6))
    photos = [p[::factor, ::factor] for p in photos] if factor > 1 else photos
    images = blend_with_photos(grey, photos, generator)
    return ImageTensorDataset(images, torch.from_numpy(labels), list(DIGIT_CLASSES))


__all__ = [
    "DIGIT_CLASSES",
    "blend_with_photos",
    "font_files",
    "make_font_digits",
    "make_mnistm_style",
    "sample_photos",
]
