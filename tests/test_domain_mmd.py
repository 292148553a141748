from __future__ import annotations

import itertools
import math

import pytest
import torch

from tlhelpers.domain.mmd import MultiKernelMMD


def reference_mmd(x, y, bw, multipliers, unbiased):
    """Plain-Python double loops over pairs, as an independent check of the vectorised code."""
    def k(a, b):
        d2 = sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True))
        return sum(math.exp(-d2 / (bw * m)) for m in multipliers)

    xs, ys = x.tolist(), y.tolist()
    if unbiased:
        exx = sum(k(a, b) for a, b in itertools.permutations(xs, 2)) / (len(xs) * (len(xs) - 1))
        eyy = sum(k(a, b) for a, b in itertools.permutations(ys, 2)) / (len(ys) * (len(ys) - 1))
    else:
        exx = sum(k(a, b) for a in xs for b in xs) / len(xs) ** 2
        eyy = sum(k(a, b) for a in ys for b in ys) / len(ys) ** 2
    exy = sum(k(a, b) for a in xs for b in ys) / (len(xs) * len(ys))
    return exx + eyy - 2 * exy


@pytest.mark.parametrize("unbiased", [False, True])
def test_agrees_with_loop_reference(unbiased):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.5
    mults = (0.5, 1.0, 2.0)
    mmd = MultiKernelMMD(mults, bandwidth=2.0, unbiased=unbiased)
    assert mmd(x, y).item() == pytest.approx(reference_mmd(x, y, 2.0, mults, unbiased), rel=1e-5)


def test_data_driven_bandwidth_is_mean_pairwise_distance():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 4, generator=g), torch.randn(5, 4, generator=g) + 1
    pooled = torch.cat([x, y]).double()
    d2 = [((a - b) ** 2).sum().item() for a, b in itertools.permutations(pooled, 2)]
    bw = sum(d2) / len(d2)
    mults = (0.25, 0.5, 1.0, 2.0, 4.0)
    assert MultiKernelMMD()(x, y).item() == pytest.approx(reference_mmd(x, y, bw, mults, False), rel=1e-4)


def test_biased_is_exactly_zero_for_the_same_batch_unbiased_is_negative():
    x = torch.randn(64, 16)
    assert MultiKernelMMD()(x, x).item() == 0.0
    assert MultiKernelMMD(unbiased=True)(x, x).item() < 0


def test_equal_distributions_unbiased_near_zero_biased_positive():
    g = torch.Generator().manual_seed(2)
    biased, unbiased = [], []
    for _ in range(30):
        x, y = torch.randn(32, 4, generator=g), torch.randn(32, 4, generator=g)
        biased.append(MultiKernelMMD(bandwidth=8.0)(x, y).item())
        unbiased.append(MultiKernelMMD(bandwidth=8.0, unbiased=True)(x, y).item())
    mean_b, mean_u = sum(biased) / 30, sum(unbiased) / 30
    assert min(biased) > 0  # the V-statistic's bias
    assert abs(mean_u) < 0.25 * mean_b  # the U-statistic is centred on 0


@pytest.mark.parametrize("bandwidth", [None, 4.0])
def test_positive_and_growing_with_mean_shift(bandwidth):
    g = torch.Generator().manual_seed(3)
    x, noise = torch.randn(128, 8, generator=g), torch.randn(128, 8, generator=g)
    values = [MultiKernelMMD(bandwidth=bandwidth)(x, noise + shift).item() for shift in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(v > 0 for v in values)
    assert all(a < b for a, b in itertools.pairwise(values)), values


@pytest.mark.parametrize("unbiased", [False, True])
def test_symmetric(unbiased):
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(20, 5, generator=g), torch.randn(30, 5, generator=g) * 2
    mmd = MultiKernelMMD(unbiased=unbiased)
    assert mmd(x, y).item() == pytest.approx(mmd(y, x).item(), rel=1e-5, abs=1e-7)


def test_gradient_pulls_samples_together():
    x = torch.randn(32, 4)
    y = (torch.randn(32, 4) + 2).requires_grad_(True)
    MultiKernelMMD()(x, y).backward()
    step = -y.grad.mean(0)  # descending the loss moves y's mean toward x's
    assert torch.dot(step, x.mean(0) - y.detach().mean(0)) > 0


def test_bad_input():
    with pytest.raises(ValueError, match="do not match"):
        MultiKernelMMD()(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="at least 2 rows"):
        MultiKernelMMD(unbiased=True)(torch.randn(1, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="multipliers"):
        MultiKernelMMD(multipliers=())
    with pytest.raises(ValueError, match="bandwidth"):
        MultiKernelMMD(bandwidth=0.0)
