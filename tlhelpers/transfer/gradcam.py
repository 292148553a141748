"""Grad-CAM (Selvaraju et al., 2017): where in the image a classifier looks for a class.

Take the activation maps ``A_k`` of a convolutional layer and the gradient of the class score
``y_c`` with respect to them. Each channel gets a weight, the spatial mean of its gradient,
``w_k = mean_ij dy_c / dA_k[i, j]``; the map is ``relu(sum_k w_k A_k)``, upsampled to the image
and scaled to [0, 1]. Written by hand (about 80 lines) so the idea stays visible: one forward hook
keeps the layer's output, ``torch.autograd.grad`` gives the gradient, nothing else changes.

Example:
    >>> maps = grad_cam(model, images)  # (N, H, W), the predicted class, the last conv stage
    >>> fig = plot_gradcam(images, {"pretrained": maps, "scratch": grad_cam(scratch, images)},
    ...                    mean=IMAGENET_MEAN, std=IMAGENET_STD)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Modules that turn maps into vectors: a child holding one is the head side, so the search goes inside it.
_TO_VECTOR = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def conv_layer_names(model: nn.Module) -> list[str]:
    """Dotted names of the modules of ``model`` that contain an ``nn.Conv2d``: the layers Grad-CAM can look at."""
    return [name for name, m in model.named_modules() if name and _has_conv(m)]


def default_layer(model: nn.Module) -> str:
    """The last convolutional stage: ``"layer4"`` for ResNets, else the last child holding a ``Conv2d``.

    When that child also pools to a vector (``SmallCNN.backbone``, ``Conv4.encoder``), the search
    continues inside it, so the layer found outputs a ``(N, C, h, w)`` map.

    Raises:
        ValueError: if the model has no ``nn.Conv2d``.
    """
    if isinstance(getattr(model, "layer4", None), nn.Module):
        return "layer4"
    prefix, module = "", model
    while True:
        children = [(name, child) for name, child in module.named_children() if _has_conv(child)]
        if not children:
            if not prefix:
                raise ValueError(f"{type(model).__name__} has no nn.Conv2d; Grad-CAM needs a convolutional model.")
            return prefix
        name, module = children[-1]
        prefix = f"{prefix}.{name}" if prefix else name
        if not any(isinstance(m, _TO_VECTOR) for m in module.modules()):
            return prefix


def _resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"the layer {type(layer).__name__} is not a module of this model; pass one of its modules.")
        return layer
    name = default_layer(model) if layer is None else layer
    try:
        return model.get_submodule(name)
    except AttributeError:
        valid = conv_layer_names(model)
        shown = ", ".join(valid[:40]) + (f", ... ({len(valid) - 40} more)" if len(valid) > 40 else "")
        raise ValueError(f"model has no layer {name!r}; choose one of: {shown}.") from None


def grad_cam(
    model: nn.Module,
    images: Tensor,
    *,
    layer: nn.Module | str | None = None,
    target: int | Sequence[int] | Tensor | None = None,
) -> Tensor:
    """Grad-CAM maps of ``images`` for the ``target`` classes, at the resolution of the images.

    The model runs in eval mode; afterwards every module's mode and every parameter's
    ``requires_grad`` are as before, no ``.grad`` is written and no hook is left behind. A frozen
    backbone (``requires_grad=False`` everywhere) works: the gradient is taken with respect to the
    layer's output, not the parameters.

    Args:
        model: a classifier returning ``(N, num_classes)`` scores.
        images: a normalised batch, as the model sees it.
        layer: a module of ``model`` or its dotted name (``"layer4"``, ``"backbone.2"``); None
            for :func:`default_layer`.
        target: class index for every image, or one per image; None for the predicted class.

    Shape:
        ``images``: ``(N, C, H, W)``; returns ``(N, H, W)`` float32 on the CPU, each map in
        [0, 1] with maximum exactly 1 (all zeros when the class has no positive evidence).

    Raises:
        ValueError: for an unknown layer name (listing the valid ones), a layer whose output is
            not a ``(N, C, h, w)`` map, or a number of targets that is neither 1 nor ``N``.
    """
    module = _resolve_layer(model, layer)
    captured: list[Tensor] = []

    def keep(_m: nn.Module, _inputs: object, output: Tensor) -> Tensor:
        leaf = output.detach().requires_grad_(True)  # a leaf of its own: frozen weights do not matter
        captured.append(leaf)
        return leaf.clone()  # later in-place ops (ReLU(inplace=True)) must not touch the leaf

    modes = [(m, m.training) for m in model.modules()]
    handle = module.register_forward_hook(keep)
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), images.device)
        with torch.enable_grad():
            logits = model(images.to(device))
            if not captured or captured[-1].ndim != 4:
                shape = tuple(captured[-1].shape) if captured else "nothing"
                raise ValueError(f"layer outputs {shape}, not an (N, C, h, w) map; choose a convolutional layer.")
            acts = captured[-1]
            if target is None:
                classes = logits.argmax(1)
            else:
                classes = torch.as_tensor(target, device=logits.device).long().reshape(-1)
                if len(classes) not in (1, len(logits)):
                    raise ValueError(f"{len(classes)} targets for {len(logits)} images; give one class or one per image.")
                classes = classes.expand(len(logits))
            score = logits.gather(1, classes[:, None]).sum()
            (grads,) = torch.autograd.grad(score, acts)
    finally:
        handle.remove()
        for m, training in modes:
            m.training = training
    weights = grads.mean(dim=(2, 3), keepdim=True)  # w_k: global-average-pooled gradients
    cam = F.relu((weights * acts.detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    peak = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))
    return cam.float().cpu()


def for_display(images: Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Tensor:
    """Images ready for ``imshow``: uint8 scaled to [0, 1], normalisation undone when ``mean`` and ``std`` are
    given (:func:`tlhelpers.data.preview.denormalize`), clamped to [0, 1].

    Shape:
        ``images``: ``(C, H, W)`` or ``(N, C, H, W)``; returns the same shape, float32 on the CPU.
    """
    from tlhelpers.data.preview import denormalize

    x = images.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if mean is not None and std is not None:
        x = denormalize(x, mean, std)
    return x.clamp(0, 1)


def _imshow(ax: object, image: Tensor) -> None:
    img = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
    ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1)  # type: ignore[attr-defined]


def plot_gradcam(
    images: Tensor,
    maps_by_model: Mapping[str, Tensor],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    titles: Sequence[str] | None = None,
) -> Figure:
    """One row per image: the image, then its Grad-CAM overlay for each model side by side.

    Args:
        images: the images the maps were computed on, normalised or not.
        maps_by_model: ``{"pretrained": maps, "scratch": maps}``, each ``(N, H, W)`` from :func:`grad_cam`.
        mean: the normalisation's per-channel mean, to undo it for display.
        std: the normalisation's per-channel standard deviation.
        titles: one title per image (e.g. its true class) for the first column.

    Returns:
        The closed figure, ``N`` rows by ``1 + len(maps_by_model)`` columns.

    Raises:
        ValueError: if a model's maps or the titles do not match the images.
    """
    import matplotlib.pyplot as plt

    from tlhelpers.core.style import TILE_TITLE_SIZE, finish

    n = len(images)
    for name, maps in maps_by_model.items():
        if len(maps) != n:
            raise ValueError(f"{len(maps)} maps for {name!r} but {n} images; compute grad_cam on these images.")
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images; give one title per image.")
    shown = for_display(images, mean, std)
    cols = 1 + len(maps_by_model)
    fig, axes = plt.subplots(n, cols, figsize=(2.0 * cols, 2.1 * n), squeeze=False)
    for i in range(n):
        _imshow(axes[i, 0], shown[i])
        axes[i, 0].set_title(titles[i] if titles is not None else "image", fontsize=TILE_TITLE_SIZE)
        for j, (name, maps) in enumerate(maps_by_model.items(), start=1):
            # the map over a grey copy of the image: colour then means evidence, not the photo's own colours
            axes[i, j].imshow(shown[i].mean(0).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[i, j].imshow(maps[i].detach().cpu().float().numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
            axes[i, j].set_title(f"Grad-CAM: {name}", fontsize=TILE_TITLE_SIZE)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return finish(fig)


__all__ = ["conv_layer_names", "default_layer", "for_display", "grad_cam", "plot_gradcam"]
