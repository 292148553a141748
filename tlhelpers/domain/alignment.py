"""How far apart two domains are in the features the label classifier reads, after training.

Two divergences, both measured on held-out images with the trained model frozen:

- the **proxy A-distance** (:func:`tlhelpers.domain.a_distance.proxy_a_distance`): a *fresh*
  linear domain classifier, trained to convergence, separates source from target features;
- the **unbiased multi-kernel MMD** (:class:`tlhelpers.domain.mmd.MultiKernelMMD`), with the
  bandwidth set from the pooled features, so models whose features differ in scale compare fairly.

Both differ from the accuracy of DANN's own discriminator during training, which plays a game
against features that keep moving; a model can keep its own adversary near chance while a fresh
classifier still tells the domains apart.

Example:
    >>> report = measure_alignment(result.model, pair.source_test, pair.target_test)
    >>> report["pad"], report["mmd"]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from tlhelpers.domain.a_distance import proxy_a_distance
from tlhelpers.domain.mmd import MultiKernelMMD
from tlhelpers.domain.visual import feature_vectors


def domain_divergences(source_features: torch.Tensor, target_features: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Proxy A-distance and unbiased multi-kernel MMD^2 between two feature sets.

    Both sets are cut to the same number of rows (the first ``min(N, M)``), so 0.5 is the
    domain classifier's chance error.

    Args:
        source_features: source features.
        target_features: target features.
        seed: seed of the proxy A-distance's split.

    Returns:
        ``{"pad": ..., "mmd": ..., "n": rows per domain}``.

    Shape:
        ``(N, D)`` and ``(M, D)``.

    Raises:
        ValueError: on feature sizes that differ or fewer than 4 rows per domain.
    """
    n = min(len(source_features), len(target_features))
    if source_features.ndim != 2 or target_features.ndim != 2 or n < 4:
        raise ValueError(
            f"got features of shapes {tuple(source_features.shape)} and {tuple(target_features.shape)}; "
            "pass (N, D) tensors with at least 4 rows each."
        )
    xs, xt = source_features[:n].float(), target_features[:n].float()
    pad = proxy_a_distance(xs, xt, seed=seed)
    mmd = float(MultiKernelMMD(unbiased=True)(xs, xt))
    return {"pad": pad, "mmd": mmd, "n": n}


def measure_alignment(
    model: nn.Module,
    source: Any,
    target: Any,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """:func:`domain_divergences` of ``model.forward_features`` on two labelled datasets.

    The labels are not used (the datasets are those of the test splits, read in order).

    Args:
        model: a trained model with ``forward_features`` (``DigitNet`` or ``DANN``).
        source: source images, e.g. ``pair.source_test``.
        target: target images, e.g. ``pair.target_test``.
        seed: seed of the proxy A-distance's split.
        device: where to compute the features.

    Returns:
        ``{"pad": ..., "mmd": ..., "n": ...}``.

    Raises:
        ValueError: if ``model`` has no ``forward_features``.
    """
    if not hasattr(model, "forward_features"):
        raise ValueError(f"{type(model).__name__} has no forward_features; pass a DigitNet or a DANN.")
    fs, _ = feature_vectors(model, DataLoader(source, 256), device=device)
    ft, _ = feature_vectors(model, DataLoader(target, 256), device=device)
    return domain_divergences(fs, ft, seed=seed)
