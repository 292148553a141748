"""Freeze and unfreeze a network by stage name or depth, and count its trainable parameters.

A *stage* is a named block of the network, in forward order; this works on every model of
:mod:`tlhelpers.models.api`. For a ResNet the stages are ``conv1, bn1, layer1, layer2, layer3,
layer4, fc``; for the torchvision families that keep their body in a ``features`` sequence (VGG,
EfficientNet, MobileNet, ConvNeXt, DenseNet) each ``features.<i>`` is a stage, followed by the
head's container (``classifier``).

BatchNorm: a frozen BatchNorm layer (all its parameters frozen) is kept in eval mode by
:func:`tlhelpers.training.engine.train_mode`, so its running statistics stay the pretrained ones. Freezing
through this module therefore freezes the statistics too; :func:`freeze_batchnorm` does it for
every BatchNorm layer, which also helps full fine-tuning with small batches.

Example:
    >>> unfreeze_last(model, 2)        # ResNet: layer4 and fc train, the rest is frozen
    >>> count_parameters(model)        # trainable only
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def stage_names(model: nn.Module) -> list[str]:
    """Names of the model's stages with parameters, in forward (registration) order.

    A wrapped network with the course's model interface (the ``classifier`` of a ``DANN``) is
    split into its own stages (``classifier.layer4``, ``classifier.fc``), followed by the wrapper's
    other stages (``discriminator``).
    """
    names = []
    for name, child in model.named_children():
        if name == "features" and isinstance(child, nn.Sequential):
            names += [f"features.{sub}" for sub, m in child.named_children() if _has_params(m)]
        elif callable(getattr(child, "forward_features", None)) and _has_params(child):
            names += [f"{name}.{sub}" for sub in stage_names(child)]
        elif _has_params(child):
            names.append(name)
    return names


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def get_stages(model: nn.Module, stages: str | Iterable[str]) -> list[nn.Module]:
    """Look up stage (or any submodule) names.

    Raises:
        ValueError: for a name the model lacks, listing its stages.
    """
    names = [stages] if isinstance(stages, str) else list(stages)
    table = dict(model.named_modules())
    unknown = [n for n in names if n not in table or n == ""]
    if unknown:
        raise ValueError(
            f"{type(model).__name__} has no stage {', '.join(map(repr, unknown))}; "
            f"valid stages: {', '.join(stage_names(model))}."
        )
    return [table[n] for n in names]


def set_trainable(model: nn.Module, stages: str | Iterable[str] | None, trainable: bool) -> nn.Module:
    """Set ``requires_grad`` of the named stages (or the whole model when ``stages`` is None).

    Args:
        model: the network.
        stages: a stage name such as ``"layer4"``, several names, any submodule name
            (``"layer4.2"``), or None for every parameter.
        trainable: True to unfreeze, False to freeze.

    Returns:
        The model, for chaining.

    Raises:
        ValueError: for a name the model lacks, listing its stages.
    """
    modules = [model] if stages is None else get_stages(model, stages)
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(trainable)
    return model


def freeze(model: nn.Module, stages: str | Iterable[str] | None = None) -> nn.Module:
    """Freeze the named stages, or the whole model when ``stages`` is None."""
    return set_trainable(model, stages, False)


def unfreeze(model: nn.Module, stages: str | Iterable[str] | None = None) -> nn.Module:
    """Unfreeze the named stages, or the whole model when ``stages`` is None."""
    return set_trainable(model, stages, True)


def unfreeze_last(model: nn.Module, n: int) -> nn.Module:
    """Freeze everything, then unfreeze the last ``n`` stages (the head counts as one).

    ``unfreeze_last(resnet, 1)`` trains only ``fc``; ``unfreeze_last(resnet, 2)`` trains ``layer4``
    and ``fc``.

    Raises:
        ValueError: if ``n`` is not between 1 and the number of stages.
    """
    names = stage_names(model)
    if not 1 <= n <= len(names):
        raise ValueError(f"n={n} is out of range; the model has {len(names)} stages: {', '.join(names)}.")
    freeze(model)
    return unfreeze(model, names[-n:])


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Freeze the affine parameters of every BatchNorm layer, so ``train_mode`` keeps them in eval."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for p in module.parameters(recurse=False):
                p.requires_grad_(False)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (elements), only the trainable ones by default."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trainable_stages(model: nn.Module) -> list[str]:
    """Stages with at least one trainable parameter, for a quick check of what will learn."""
    return [n for n in stage_names(model) if any(p.requires_grad for p in model.get_submodule(n).parameters())]
