"""Build a torchvision classifier by name, replace its head, and load its weights offline.

One interface for every family (resnet, vgg, efficientnet, mobilenet, convnext, densenet, regnet,
...): :func:`build_classifier` returns the model with a new head and the preprocessing its weights
expect; :func:`get_head`, :func:`replace_head` and :func:`features` work on any of them.

Weights are looked up in the torch hub cache (``$TORCH_HOME/hub/checkpoints``) before any download.
In reduced mode nothing is downloaded: without a cached file the model keeps its random init and a
banner says so. In full mode a failed download raises :class:`WeightsUnavailableError`.

Example:
    >>> built = build_classifier("resnet50", num_classes=37)  # ResNet50_Weights.IMAGENET1K_V2
    >>> built.weights_loaded, built.model.fc
    (True, Linear(in_features=2048, out_features=37, bias=True))
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import WeightsEnum, get_model, get_model_weights, list_models

from tlhelpers.mini_resnet import mini_resnet
from tlhelpers.mini_vgg import mini_vgg
from tlhelpers.runtime import is_reduced

# Architectures of this course that torchvision lacks; they have no pretrained weights.
_EXTRA_ARCHS: dict[str, Callable[..., nn.Module]] = {"mini_resnet": mini_resnet, "mini_vgg": mini_vgg}

# Where the classification head lives, by family; other families use their last nn.Linear.
_HEAD_PATHS: dict[str, str] = {
    "resnet": "fc", "resnext": "fc", "wide_resnet": "fc", "regnet": "fc",
    "vgg": "classifier.6", "efficientnet": "classifier.1", "mobilenet_v2": "classifier.1",
    "mobilenet_v3": "classifier.3", "convnext": "classifier.2", "densenet": "classifier",
}
# Builder arguments torchvision itself sets when it loads weights into these architectures.
_WEIGHT_OVERRIDES: dict[str, dict[str, object]] = {
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
}


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights that are neither in the hub cache nor downloadable (full mode)."""


@dataclass
class BuiltModel:
    """What :func:`build_classifier` returns.

    Attributes:
        model: the network with a new ``num_classes`` head.
        transforms: the preprocessing of the architecture's weights (resize, crop, normalise);
            the same for a from-scratch model, so comparisons see identical inputs.
        weights: the weights asked for, or None for random init.
        weights_loaded: True only when pretrained weights were actually loaded.
        arch: the architecture name.
    """

    model: nn.Module
    transforms: Callable | None
    weights: WeightsEnum | None
    weights_loaded: bool
    arch: str


def list_architectures() -> list[str]:
    """Names of torchvision's image classifiers (e.g. ``"resnet50"``) and the course's ``"mini_resnet"``, ``"mini_vgg"``."""
    return [*list_models(module=torchvision.models), *_EXTRA_ARCHS]


def _check_arch(arch: str) -> None:
    valid = list_architectures()
    if arch not in valid:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(valid)}.")


def resolve_weights(arch: str, weights: WeightsEnum | str | None = "DEFAULT") -> WeightsEnum | None:
    """Turn ``"DEFAULT"``, ``"IMAGENET1K_V2"``, ``"ResNet50_Weights.IMAGENET1K_V2"`` or an enum into an enum.

    Raises:
        ValueError: for an unknown architecture or weights name, listing the valid ones.
    """
    _check_arch(arch)
    if weights is None or isinstance(weights, WeightsEnum):
        return weights
    if arch in _EXTRA_ARCHS:
        raise ValueError(f"{arch} has no pretrained weights; pass weights=None (and load your own state dict).")
    enum = get_model_weights(arch)
    name = weights.split(".")[-1]
    try:
        return enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        valid = ["DEFAULT", *(w.name for w in enum)]
        raise ValueError(f"unknown weights {weights!r} for {arch}; choose one of: {', '.join(valid)}.") from None


def cached_weights_path(weights: WeightsEnum) -> Path:
    """The file torchvision reads the weights from: ``<torch hub dir>/checkpoints/<file name of the URL>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _load_state(weights: WeightsEnum, reduced: bool, progress: bool) -> dict[str, Tensor] | None:
    path = cached_weights_path(weights)
    if reduced and not path.exists():
        return None  # reduced mode never downloads
    try:
        # torch.hub checks the file-name hash on download; weights_only=True runs no pickled code.
        return weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except Exception as exc:  # URLError, HTTPError, hash mismatch, truncated file
        raise WeightsUnavailableError(
            f"could not get {weights} ({type(exc).__name__}: {exc}); connect to the internet, or put "
            f"the file at {path} (TORCH_HOME sets its folder), or run in reduced mode (TLH_REDUCED=1)."
        ) from exc


def build_classifier(
    arch: str = "resnet50",
    num_classes: int = 1000,
    weights: WeightsEnum | str | None = "DEFAULT",
    *,
    progress: bool = True,
    reduced: bool | None = None,
) -> BuiltModel:
    """Build a torchvision classifier with pretrained weights and a new head of ``num_classes``.

    Args:
        arch: a name from :func:`list_architectures`.
        num_classes: outputs of the new head (at least 2). With ImageNet weights and 1000 classes
            the original head is kept.
        weights: ``"DEFAULT"`` (e.g. ``ResNet50_Weights.IMAGENET1K_V2``), a weights name or enum,
            or None for random init.
        progress: show the download progress bar.
        reduced: the mode; None reads ``TLH_REDUCED``. Reduced mode never downloads and falls back
            to random init (with a warning) when the weights are not cached.

    Returns:
        A :class:`BuiltModel`; check ``weights_loaded`` before trusting the backbone.

    Raises:
        ValueError: for an unknown architecture or weights, or ``num_classes < 2``.
        WeightsUnavailableError: in full mode, when the weights can be neither read nor downloaded.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} is too small; a classifier head needs at least 2 classes.")
    enum = resolve_weights(arch, weights)
    reduced = is_reduced() if reduced is None else reduced
    state = _load_state(enum, reduced, progress) if enum is not None else None
    if enum is not None and state is None:
        warnings.warn(
            f"\n{'=' * 72}\nREDUCED MODE: {enum} is not in {cached_weights_path(enum).parent}; "
            f"{arch} keeps its RANDOM initialisation.\n{'=' * 72}",
            stacklevel=2,
        )
    kwargs: dict[str, object] = {}
    if state is not None:
        kwargs = {"num_classes": len(enum.meta["categories"]), **_WEIGHT_OVERRIDES.get(arch, {})}
    model = _EXTRA_ARCHS[arch]() if arch in _EXTRA_ARCHS else get_model(arch, weights=None, **kwargs)
    if state is not None:
        model.load_state_dict(state)
    if get_head(model).out_features != num_classes:
        replace_head(model, num_classes)
    preset = enum or (None if arch in _EXTRA_ARCHS else get_model_weights(arch).DEFAULT)
    return BuiltModel(model, preset.transforms() if preset is not None else None, enum, state is not None, arch)


def head_name(model: nn.Module) -> str:
    """The dotted name of the final linear layer (``"fc"`` for ResNets, ``"classifier.1"`` for EfficientNets).

    Raises:
        ValueError: if the model has no linear layer to act as a head.
    """
    modules = dict(model.named_modules())
    for family, path in _HEAD_PATHS.items():
        if type(model).__name__.lower().startswith(family.replace("_", "")) and isinstance(modules.get(path), nn.Linear):
            return path
    linear = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head; pass a classifier such as resnet50.")
    return linear[-1]


def get_head(model: nn.Module) -> nn.Linear:
    """The final linear layer of ``model`` (see :func:`head_name`)."""
    return model.get_submodule(head_name(model))


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Swap the head for a new ``nn.Linear`` with ``num_classes`` outputs; return the new head.

    The new head is on the old head's device and dtype and is trainable.

    Raises:
        ValueError: if ``num_classes < 2``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes} is too small; a classifier head needs at least 2 classes.")
    name = head_name(model)
    old = model.get_submodule(name)
    new = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
    return new


def features(model: nn.Module, x: Tensor) -> Tensor:
    """The pooled features the head sees (its input), for any architecture.

    Shape:
        ``x``: ``(N, C, H, W)``; returns ``(N, head.in_features)``.
    """
    captured: list[Tensor] = []
    handle = get_head(model).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


def load_backbone_state(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Load every weight except the head's, e.g. from your own pretraining on another task.

    Raises:
        ValueError: if a backbone weight is missing or unexpected (a different architecture).
    """
    head = head_name(model) + "."
    body = {k: v for k, v in state_dict.items() if not k.startswith(head)}
    try:
        result = model.load_state_dict(body, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(
            f"state dict does not match {type(model).__name__} ({str(exc).splitlines()[1].strip()}); "
            "build the same architecture that produced it."
        ) from None
    missing = [k for k in result.missing_keys if not k.startswith(head)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"state dict does not match {type(model).__name__}: missing {missing[:3]}, unexpected "
            f"{result.unexpected_keys[:3]}; build the same architecture that produced it."
        )
