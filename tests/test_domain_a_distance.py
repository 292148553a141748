from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from tlhelpers.domain.a_distance import proxy_a_distance


def test_separable_domains_give_two():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 6)), rng.normal(size=(200, 6)) + 5
    assert proxy_a_distance(a, b) == pytest.approx(2.0)


def test_same_distribution_gives_about_zero():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(400, 6))
    assert abs(proxy_a_distance(a, b)) < 0.3


def test_grows_with_shift_and_agrees_with_a_linear_svm():
    rng = np.random.default_rng(2)
    a, noise = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    pads = [proxy_a_distance(a, noise + s) for s in (0.0, 0.5, 1.5)]
    assert pads[0] < pads[1] < pads[2]
    # Independent reference: a linear SVM (Ben-David et al.'s classifier) on the same split.
    x, y = np.concatenate([a, noise + 0.5]), np.repeat([0, 1], 400)
    perm = np.random.default_rng(0).permutation(800)
    tr, te = perm[:400], perm[400:]
    eps = (LinearSVC().fit(x[tr], y[tr]).predict(x[te]) != y[te]).mean()
    assert pads[1] == pytest.approx(2 * (1 - 2 * eps), abs=0.2)


def test_accepts_tensors():
    a, b = torch.randn(50, 3), torch.randn(50, 3) + 4
    assert proxy_a_distance(a, b) > 1.8


def test_bad_input():
    with pytest.raises(ValueError, match="feature sizes differ"):
        proxy_a_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="2-D"):
        proxy_a_distance(np.zeros(10), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="test_fraction"):
        proxy_a_distance(np.zeros((10, 3)), np.ones((10, 3)), test_fraction=1.0)
