"""Parameter groups with learning-rate multipliers (discriminative learning rates), for any optimizer.

Fine-tuning a pretrained network works best when layers that are already good move slowly and
the new head moves fast. Torch optimizers take a list of *parameter groups*, each with its own
``lr``; these functions build that list from stage names, so it works with SGD, Adam, AdamW, ...
Frozen parameters are left out. Biases and normalisation weights get no weight decay (decaying
them only shrinks the scale of activations and hurts a little).

Each group also carries ``"name"`` and ``"lr_mult"`` keys; torch keeps unknown keys, and the
schedules in :mod:`tlhelpers.training.schedules` scale each group's own base LR, so the ratios hold.

Example:
    >>> groups = param_groups(model, lr=1e-3, multipliers={"fc": 1.0}, default=0.1)
    >>> optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from tlhelpers.models.api import head_name
from tlhelpers.training.freezing import get_stages, stage_names


def _no_decay(module: nn.Module, param_name: str) -> bool:
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
    return param_name.endswith("bias") or isinstance(module, norms)


def param_groups(
    model: nn.Module,
    lr: float,
    multipliers: Mapping[str, float] | None = None,
    default: float = 1.0,
    weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """Group trainable parameters by the stage they belong to, each with ``lr * multiplier``.

    Args:
        model: the network.
        lr: the base learning rate (the head's, usually).
        multipliers: stage or submodule name -> LR multiplier, e.g. ``{"layer4": 0.1, "fc": 1.0}``;
            the longest matching name wins.
        default: multiplier for parameters that no name matches.
        weight_decay: decay for weights; biases and normalisation parameters get 0.

    Returns:
        A list of dicts with ``params``, ``lr``, ``weight_decay``, ``lr_mult`` and ``name``,
        ready for ``torch.optim.<Optimizer>(groups)``.

    Raises:
        ValueError: for a name the model lacks (listing its stages), a negative multiplier,
            or a model with nothing trainable.
    """
    multipliers = dict(multipliers or {})
    get_stages(model, multipliers)  # raises for names the model lacks
    modules = dict(model.named_modules())
    if any(m < 0 for m in (*multipliers.values(), default)):
        raise ValueError("LR multipliers must be >= 0; use 0 or freeze a stage to stop it learning.")
    by_length = sorted(multipliers, key=len, reverse=True)
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for module_name, module in modules.items():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{module_name}.{pname}" if module_name else pname
            stage = next((n for n in by_length if full.startswith(n + ".")), None)
            decay = not _no_decay(module, pname)
            key = (stage or "default", decay)
            if key not in groups:
                mult = multipliers[stage] if stage is not None else default
                groups[key] = {
                    "params": [], "lr": lr * mult, "lr_mult": mult,
                    "weight_decay": weight_decay if decay else 0.0,
                    "name": f"{key[0]}{'' if decay else ' (no decay)'}",
                }
            groups[key]["params"].append(p)
    if not groups:
        raise ValueError("the model has no trainable parameters; unfreeze some stages first.")
    return list(groups.values())


def discriminative_groups(
    model: nn.Module, lr: float, backbone_mult: float = 0.1, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """The classification head at ``lr``, everything else at ``lr * backbone_mult``.

    The head is :func:`tlhelpers.models.api.head_name`: ``fc`` of a ResNet, ``head.1`` of a
    ``DigitNet``, ``classifier.fc`` of a ``DANN`` around a ResNet (not its discriminator).
    """
    return param_groups(model, lr, {head_name(model): 1.0}, default=backbone_mult, weight_decay=weight_decay)


def layerwise_groups(
    model: nn.Module, lr: float, decay: float = 0.5, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Per-stage decay: the last stage (head) at ``lr``, each earlier stage ``decay`` times the next.

    For a ResNet: ``fc`` at lr, ``layer4`` at lr*decay, ``layer3`` at lr*decay**2, ...

    Raises:
        ValueError: if ``decay`` is not in (0, 1].
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay={decay} must be in (0, 1]; e.g. 0.5 halves the LR per stage.")
    names = stage_names(model)
    mults = {name: decay ** (len(names) - 1 - i) for i, name in enumerate(names)}
    return param_groups(model, lr, mults, default=decay ** len(names), weight_decay=weight_decay)
