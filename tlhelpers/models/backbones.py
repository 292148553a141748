"""Build a torchvision classifier by name, replace its head, and load its weights offline.

One interface for every family (resnet, vgg, efficientnet, mobilenet, convnext, densenet, regnet,
...): :func:`build_classifier` returns the model with a new head and the preprocessing its weights
expect, with the interface of :mod:`tlhelpers.models.api` (``forward_features``, ``forward_head``,
``num_features``, ``reset_classifier``); :func:`get_head`, :func:`replace_head` and :func:`features`
work on any of them.

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
from typing import Any, cast
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import WeightsEnum, get_model, get_model_weights, list_models

from tlhelpers.core.runtime import is_reduced
from tlhelpers.models.api import attach_interface, get_head, head_name, replace_head
from tlhelpers.models.api import forward_features as _forward_features
from tlhelpers.models.mini_resnet import mini_resnet
from tlhelpers.models.mini_vgg import mini_vgg

# Architectures of this course that torchvision lacks; they have no pretrained weights.
_EXTRA_ARCHS: dict[str, Callable[..., nn.Module]] = {"mini_resnet": mini_resnet, "mini_vgg": mini_vgg}

# Builder arguments torchvision itself sets when it loads weights into these architectures.
_WEIGHT_OVERRIDES: dict[str, dict[str, object]] = {
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
}
# From scratch: torchvision's own init, asked for explicitly (None warns that its default may change).
_SCRATCH_OVERRIDES: dict[str, dict[str, object]] = {"googlenet": {"init_weights": True}, "inception_v3": {"init_weights": True}}
# Auxiliary heads and the flag that makes the model return them in train mode, by class.
_AUX_HEADS: dict[str, tuple[str, ...]] = {"GoogLeNet": ("aux1", "aux2"), "Inception3": ("AuxLogits",)}


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
            f"the file at {path} (TORCH_HOME sets its folder), or run at the reduced budget (TLH_BUDGET=reduced)."
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

    The model has the course's interface (:mod:`tlhelpers.models.api`): ``forward_features``,
    ``forward_head``, ``num_features`` and ``reset_classifier``, next to its usual attributes
    (``model.fc``) and ``state_dict`` keys. GoogLeNet and Inception-v3 lose their auxiliary heads
    (:func:`drop_aux_heads`), so that in train mode they return plain logits like every other
    model and :func:`tlhelpers.training.engine.fit` can fine-tune them.

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
    kwargs: dict[str, object] = dict(_SCRATCH_OVERRIDES.get(arch, {}))
    if enum is not None and state is not None:  # a state comes only with weights
        kwargs = {"num_classes": len(enum.meta["categories"]), **_WEIGHT_OVERRIDES.get(arch, {})}
    model = _EXTRA_ARCHS[arch]() if arch in _EXTRA_ARCHS else get_model(arch, weights=None, **kwargs)
    if state is not None:
        model.load_state_dict(state)
    drop_aux_heads(model)  # after loading: the pretrained state dict has their weights
    attach_interface(model)
    if get_head(model).out_features != num_classes:
        replace_head(model, num_classes)
    preset = enum or (None if arch in _EXTRA_ARCHS else get_model_weights(arch).DEFAULT)
    return BuiltModel(model, preset.transforms() if preset is not None else None, enum, state is not None, arch)


def features(model: nn.Module, x: Tensor) -> Tensor:
    """The pooled features the head sees (its input), for any architecture: :func:`tlhelpers.models.api.forward_features`.

    Shape:
        ``x``: ``(N, C, H, W)``; returns ``(N, num_features)``.
    """
    return _forward_features(model, x)


def drop_aux_heads(model: nn.Module) -> nn.Module:
    """Remove GoogLeNet's and Inception-v3's auxiliary heads, so that train mode returns plain logits.

    With them, ``model(x)`` in train mode returns a namedtuple (logits plus auxiliary logits) that
    a cross-entropy step cannot use; torchvision's own training recipe adds their losses, which
    fine-tuning does not need. Other models are returned unchanged.

    Returns:
        ``model`` itself, without the ``aux*`` modules (their weights leave the ``state_dict``).
    """
    aux = _AUX_HEADS.get(type(model).__name__, ())
    for name in aux:
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    if aux:
        # a plain bool attribute of GoogLeNet and Inception3 (Module's typing knows tensors and modules only)
        cast(Any, model).aux_logits = False
    return model


def load_backbone_state(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Load every weight except the head's, e.g. from your own pretraining on another task.

    Weights of auxiliary heads the model no longer has (see :func:`drop_aux_heads`) are skipped.

    Raises:
        ValueError: if a backbone weight is missing or unexpected (a different architecture).
    """
    head = head_name(model) + "."
    dropped = tuple(f"{name}." for name in _AUX_HEADS.get(type(model).__name__, ()) if getattr(model, name, None) is None)
    body = {k: v for k, v in state_dict.items() if not k.startswith(head) and not (dropped and k.startswith(dropped))}
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
