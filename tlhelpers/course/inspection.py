"""Look at what a classifier does: a prediction grid, the most-confused class pairs, top-k scores.

Plotting functions return a matplotlib ``Figure``; :func:`top5_explorer` returns an ipywidgets box
(ipywidgets 7 on Colab and 8 elsewhere) that shows the top-5 predictions of a test or uploaded image.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def topk(logits: Tensor, classes: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable classes of each row, as ``(name, probability)`` pairs.

    Shape:
        ``logits``: ``(N, C)`` or ``(C,)``.

    Raises:
        ValueError: if ``classes`` does not match the logits' width.
    """
    logits = logits.float().reshape(-1, logits.shape[-1])
    if logits.shape[1] != len(classes):
        raise ValueError(f"logits have {logits.shape[1]} classes but {len(classes)} names were given; pass dataset.classes.")
    probs, idx = logits.softmax(1).topk(min(k, len(classes)), dim=1)
    return [[(classes[i], p) for i, p in zip(row_i.tolist(), row_p.tolist())] for row_i, row_p in zip(idx, probs)]


def most_confused(
    labels: Tensor | np.ndarray, preds: Tensor | np.ndarray, classes: Sequence[str], k: int = 5
) -> list[tuple[str, str, int]]:
    """The ``k`` most frequent mistakes as ``(true class, predicted class, count)``, largest first."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(np.asarray(labels), np.asarray(preds), labels=np.arange(len(classes)))
    np.fill_diagonal(cm, 0)
    order = np.argsort(-cm, axis=None, kind="stable")[:k]
    pairs = [np.unravel_index(i, cm.shape) for i in order]
    return [(classes[t], classes[p], int(cm[t, p])) for t, p in pairs if cm[t, p] > 0]


#: Colours of right and wrong predictions (Okabe-Ito bluish green and vermillion); the titles say it in words too.
RIGHT_COLOUR, WRONG_COLOUR = "#009E73", "#D55E00"


def grid_title(true_name: str, pred_name: str) -> str:
    """The title of one image of :func:`prediction_grid`: a mark and a word for right or wrong, then both labels."""
    verdict = "\u2713 right" if true_name == pred_name else "\u2717 WRONG"
    return f"{verdict}\ntrue: {true_name}\npred: {pred_name}"


def prediction_grid(
    images: Tensor, labels: Sequence[int], preds: Sequence[int], classes: Sequence[str], ncols: int = 6
) -> Figure:
    """Images with their true and predicted labels (green when right, red when wrong).

    Right and wrong are told by more than colour: each title starts with "✓ right" or "✗ WRONG"
    (see :func:`grid_title`) and each image gets a frame, thin and green when right, thick and
    red when wrong. Rows are spaced so that titles never cover the images above them.

    Shape:
        ``images``: ``(N, C, H, W)``, uint8 or float in [0, 1].

    Returns:
        The closed figure (shown once, as a cell's value or with ``display``).
    """
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import TILE_TITLE_SIZE, finish

    n = len(images)
    nrows = max(1, -(-n // ncols))
    tile, title_room = 1.8, 0.6  # inches: an image, and its three title lines above it
    fig_w, fig_h = (tile + 0.15) * ncols, (tile + title_room) * nrows + 0.05
    fig, axes = plt.subplots(nrows, ncols, figsize=(fig_w, fig_h), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t, p in zip(axes.flat, images, labels, preds):
        img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy(), cmap="gray")
        right = int(t) == int(p)
        colour = RIGHT_COLOUR if right else WRONG_COLOUR
        ax.set_title(grid_title(classes[int(t)], classes[int(p)]), fontsize=TILE_TITLE_SIZE, color=colour,
                     fontweight="normal" if right else "bold", linespacing=1.15)
        ax.axis("on")  # the frame: spines only, no ticks
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set(color=colour, linewidth=1.5 if right else 4)
    fig = finish(fig)
    # Fixed spacing, after finish's tight layout (which cannot see past the images' equal aspect):
    # every row keeps title_room inches above its images.
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.05 / fig_h, top=1 - title_room / fig_h,
                        wspace=0.15 / tile, hspace=title_room / tile)
    return fig


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of each file in a ``FileUpload.value``: a dict in ipywidgets 7, a tuple in 8."""
    if isinstance(value, dict):  # 7.x: {name: {"metadata": {...}, "content": bytes}}
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]  # 8.x: ({"name", "content"}, ...)


def decode_image(data: bytes, image_size: int) -> Tensor:
    """An uploaded file as a uint8 RGB tensor ``(3, S, S)``: shorter side resized, centre-cropped."""
    from PIL import Image
    from torchvision.transforms import v2

    image = Image.open(io.BytesIO(data)).convert("RGB")
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    return v2.CenterCrop(image_size)(v2.Resize(image_size, antialias=True)(tensor))


def explorer_title(name: str, true_name: str | None) -> str:
    """The title of the image :func:`top5_explorer` shows: its name and its true class ("unknown" for uploads)."""
    return f"{name}\ntrue class: {true_name if true_name is not None else 'unknown'}"


def top5_lines(logits: Tensor, classes: Sequence[str], true_name: str | None = None) -> str:
    """The top-5 classes of one image, one line each, the true class marked "<- true class".

    When the true class is not among the five, a sixth line gives its probability and rank.
    """
    ranked = topk(logits, classes, k=len(classes))[0]
    lines = [f"{p:6.1%}  {name}" + ("  <- true class" if name == true_name else "") for name, p in ranked[:5]]
    names = [name for name, _ in ranked]
    if true_name is not None and true_name not in names[:5]:
        rank = names.index(true_name)
        lines.append(f"{ranked[rank][1]:6.1%}  {true_name}  <- true class, rank {rank + 1} of {len(names)}")
    return "\n".join(lines)


def top5_explorer(
    model: nn.Module,
    images: Tensor,
    classes: Sequence[str],
    preprocess: Callable[[Tensor], Tensor],
    device: torch.device | str = "cpu",
    labels: Sequence[int] | Tensor | None = None,
) -> Any:
    """A widget: pick a test image (or upload one) and see the model's top-5 classes.

    A test image shows its true class (in the picker, the title and the top-5 list, where it is
    marked); an uploaded photo has none, so its true class reads "unknown".

    Args:
        model: the classifier (put in eval mode here).
        images: uint8 test images ``(N, 3, S, S)`` to choose from.
        classes: class names.
        preprocess: the evaluation transform of one uint8 image (normalisation included).
        device: where the model is.
        labels: the true class index of each of ``images``; None shows "unknown" for all.

    Returns:
        An ``ipywidgets.VBox``; display it as a cell's last expression.

    Raises:
        ImportError: if ipywidgets is not installed (the core install lacks it).
        ValueError: if ``labels`` does not give one class per image.
    """
    try:
        import ipywidgets as widgets
    except ImportError:
        raise ImportError(
            'top5_explorer needs ipywidgets, which the core install lacks; install the course extras: pip install "tlhelpers[course]".'
        ) from None

    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images; pass the labels of exactly these images.")
    true_names = [classes[int(t)] for t in labels] if labels is not None else [None] * len(images)
    size = images.shape[-1]
    options = [(f"test image {i}" + (f" ({true_names[i]})" if true_names[i] else ""), i) for i in range(len(images))]
    picker = widgets.Dropdown(options=options, value=0, description="image",
                              layout=widgets.Layout(width="max-content"))
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
    out = widgets.Output()

    def show(image: Tensor, name: str, true_name: str | None) -> None:
        import matplotlib.pyplot as plt

        model.eval()
        with torch.no_grad():
            logits = model(preprocess(image).unsqueeze(0).to(device)).cpu()
        fig, ax = plt.subplots(figsize=(2.4, 2.6))
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(explorer_title(name, true_name), fontsize=9)
        ax.axis("off")
        fig.tight_layout()
        plt.close(fig)  # shown once, by the display below
        out.clear_output(wait=True)
        with out:
            from IPython.display import display

            display(fig)
            print(top5_lines(logits, classes, true_name))

    picker.observe(lambda change: show(images[change["new"]], f"test image {change['new']}", true_names[change["new"]]),
                   names="value")

    def on_upload(change: dict[str, Any]) -> None:
        files = uploaded_files(change["new"])
        if files:
            show(decode_image(files[-1][1], size), files[-1][0], None)

    upload.observe(on_upload, names="value")
    show(images[0], "test image 0", true_names[0])
    return widgets.VBox([widgets.HBox([picker, upload]), out])
