"""Proxy A-distance: how well a linear classifier tells two feature sets apart.

Ben-David et al. (2007) bound the target error by the source error plus a divergence between the
domains. Its practical stand-in trains a classifier to separate source features from target
features and measures its held-out error ``eps``: ``PAD = 2 * (1 - 2 * eps)``. PAD is about 0 when
the domains are indistinguishable (``eps = 0.5``) and 2 when they are perfectly separable.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(200, 5)), rng.normal(size=(200, 5)) + 3
    >>> round(proxy_a_distance(a, b), 1)
    2.0
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _as_2d(a: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    arr = a.detach().cpu().float().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or len(arr) < 4:
        raise ValueError(f"{name} has shape {arr.shape}; pass a 2-D (N, D) array with at least 4 rows.")
    return arr


def proxy_a_distance(
    source_features: np.ndarray | torch.Tensor,
    target_features: np.ndarray | torch.Tensor,
    *,
    test_fraction: float = 0.5,
    C: float = 1.0,
    seed: int = 0,
) -> float:
    """The proxy A-distance ``2 (1 - 2 eps)`` from a linear domain classifier's held-out error.

    The classifier is a standardised logistic regression, trained on a stratified part of the
    pooled features and scored on the rest. Use the same number of rows per domain so 0.5 is the
    error of guessing.

    Args:
        source_features: source features.
        target_features: target features.
        test_fraction: share of the rows held out to measure ``eps``.
        C: inverse regularisation strength of the logistic regression.
        seed: seed of the split and the solver.

    Returns:
        PAD in ``[-2, 2]``; values slightly below 0 are noise around "indistinguishable".

    Shape:
        ``(N, D)`` and ``(M, D)``.

    Raises:
        ValueError: on arrays that are not 2-D, differ in ``D``, or have fewer than 4 rows, or a
            ``test_fraction`` outside (0, 1).
    """
    xs, xt = _as_2d(source_features, "source_features"), _as_2d(target_features, "target_features")
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"feature sizes differ ({xs.shape[1]} vs {xt.shape[1]}); extract both with the same model.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} must be strictly between 0 and 1, e.g. 0.5.")
    x = np.concatenate([xs, xt])
    y = np.concatenate([np.zeros(len(xs), dtype=int), np.ones(len(xt), dtype=int)])
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    clf.fit(x_tr, y_tr)
    eps = float((clf.predict(x_te) != y_te).mean())
    return 2.0 * (1.0 - 2.0 * eps)
