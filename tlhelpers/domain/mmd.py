"""Multi-kernel Gaussian maximum mean discrepancy (MMD), the alignment loss of DAN.

MMD compares two samples through their mean embeddings under a kernel ``k``:
``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)``. With a characteristic kernel such as the
Gaussian it is zero exactly when the two distributions are equal. DAN (Long et al., 2015) sums
Gaussian kernels over a ladder of bandwidths so no single bandwidth has to be right.

Two estimators:

- **biased** (V-statistic, DAN's default): averages include ``k(x_i, x_i)``. It is exactly 0 when
  both arguments are the *same* batch, but positive (by O(1/n)) for two independent batches from
  one distribution.
- **unbiased** (U-statistic): drops the diagonal terms. Its *expectation* is exactly 0 for equal
  distributions, so single values can be negative; for the same batch passed twice it is negative.

Example:
    >>> import torch
    >>> mmd = MultiKernelMMD()
    >>> x = torch.randn(64, 8)
    >>> float(mmd(x, x))
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class MultiKernelMMD(nn.Module):
    """Squared MMD between two batches of features with a sum of Gaussian kernels.

    Kernel ``k`` is ``exp(-||a - b||^2 / bw)`` for each bandwidth ``bw = base * m`` over the
    multipliers ``m``. ``base`` is the mean squared distance of the pooled sample (detached, so the
    loss cannot shrink by inflating the bandwidth), unless ``bandwidth`` fixes it.

    Args:
        multipliers: bandwidth multipliers; DAN uses 2^-2 .. 2^2.
        bandwidth: a fixed base bandwidth instead of the data-driven one.
        unbiased: use the unbiased U-statistic instead of the biased V-statistic.

    Shape:
        ``x``: ``(N, D)``, ``y``: ``(M, D)``; returns a scalar.

    Raises:
        ValueError: on empty multipliers, a non-positive bandwidth, mismatched feature sizes, or
            fewer than two rows per sample for the unbiased estimator.
    """

    def __init__(
        self,
        multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
        bandwidth: float | None = None,
        unbiased: bool = False,
    ) -> None:
        super().__init__()
        if len(multipliers) == 0 or any(m <= 0 for m in multipliers):
            raise ValueError(f"multipliers={tuple(multipliers)} must be a non-empty list of positive numbers.")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError(f"bandwidth={bandwidth} must be positive, or None for the data-driven one.")
        self.multipliers = tuple(float(m) for m in multipliers)
        self.bandwidth = bandwidth
        self.unbiased = unbiased

    def kernel(self, a: Tensor, b: Tensor, base: Tensor | float) -> Tensor:
        """Summed Gaussian kernel matrix ``(len(a), len(b))`` for base bandwidth ``base``."""
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (base * m)) for m in self.multipliers)  # type: ignore[return-value]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"features of shapes {tuple(x.shape)} and {tuple(y.shape)} do not match; pass (N, D) and (M, D)."
            )
        n, m = len(x), len(y)
        if self.unbiased and min(n, m) < 2:
            raise ValueError("the unbiased MMD needs at least 2 rows per sample; use larger batches.")
        x, y = x.float(), y.float()
        if self.bandwidth is not None:
            base: Tensor | float = self.bandwidth
        else:
            pooled = torch.cat([x, y]).detach()
            n_all = len(pooled)
            base = torch.cdist(pooled, pooled).pow(2).sum() / max(1, n_all * n_all - n_all)
            base = base.clamp_min(1e-8)
        kxx, kyy, kxy = self.kernel(x, x, base), self.kernel(y, y, base), self.kernel(x, y, base)
        if self.unbiased:
            exx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
            eyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        else:
            exx, eyy = kxx.mean(), kyy.mean()
        return exx + eyy - 2 * kxy.mean()

    def extra_repr(self) -> str:
        return f"multipliers={self.multipliers}, bandwidth={self.bandwidth}, unbiased={self.unbiased}"
