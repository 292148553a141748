"""Look at what a classifier does: a prediction grid, the most-confused class pairs, top-k scores.

Plotting functions return a matplotlib ``Figure``; :func:`top5_explorer` returns an ipywidgets box
(ipywidgets 7 on Colab and 8 elsewhere) that shows the top-5 predictions of a test or uploaded image.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


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


def prediction_grid(
    images: Tensor, labels: Sequence[int], preds: Sequence[int], classes: Sequence[str], ncols: int = 6
) -> Any:
    """Images with their true and predicted labels (green when right, red when wrong).

    Shape:
        ``images``: ``(N, C, H, W)``, uint8 or float in [0, 1].
    """
    import matplotlib.pyplot as plt

    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.1 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t, p in zip(axes.flat, images, labels, preds):
        img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy(), cmap="gray")
        ax.set_title(f"true: {classes[int(t)]}\npred: {classes[int(p)]}", fontsize=7,
                     color="green" if int(t) == int(p) else "red")
    fig.tight_layout()
    plt.close(fig)  # shown once, by whoever displays the returned figure
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


def top5_explorer(
    model: nn.Module,
    images: Tensor,
    classes: Sequence[str],
    preprocess: Callable[[Tensor], Tensor],
    device: torch.device | str = "cpu",
) -> Any:
    """A widget: pick a test image (or upload one) and see the model's top-5 classes.

    Args:
        model: the classifier (put in eval mode here).
        images: uint8 test images ``(N, 3, S, S)`` to choose from.
        classes: class names.
        preprocess: the evaluation transform of one uint8 image (normalisation included).
        device: where the model is.

    Returns:
        An ``ipywidgets.VBox``; display it as a cell's last expression.
    """
    import ipywidgets as widgets

    size = images.shape[-1]
    picker = widgets.Dropdown(options=[(f"test image {i}", i) for i in range(len(images))], value=0,
                              description="image")
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
    out = widgets.Output()

    def show(image: Tensor, title: str) -> None:
        import matplotlib.pyplot as plt

        model.eval()
        with torch.no_grad():
            logits = model(preprocess(image).unsqueeze(0).to(device)).cpu()
        fig, ax = plt.subplots(figsize=(2.2, 2.2))
        ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=8)
        ax.axis("off")
        out.clear_output(wait=True)
        with out:
            from IPython.display import display

            display(fig)
            print("\n".join(f"{p:6.1%}  {name}" for name, p in topk(logits, classes)[0]))
        plt.close(fig)

    picker.observe(lambda change: show(images[change["new"]], f"test image {change['new']}"), names="value")

    def on_upload(change: dict[str, Any]) -> None:
        files = uploaded_files(change["new"])
        if files:
            show(decode_image(files[-1][1], size), files[-1][0])

    upload.observe(on_upload, names="value")
    show(images[0], "test image 0")
    return widgets.VBox([widgets.HBox([picker, upload]), out])
