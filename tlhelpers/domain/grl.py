"""The gradient reversal layer (GRL) of DANN, and the ``lambda`` ramp that drives it.

Forward, the layer is the identity. Backward, it multiplies the incoming gradient by ``-lambda``.
Placed between the feature extractor and the domain discriminator, it lets one backward pass train
the discriminator to *tell* the domains apart while pushing the features to make them
*indistinguishable* (Ganin & Lempitsky, 2015).

Example:
    >>> import torch
    >>> x = torch.ones(3, requires_grad=True)
    >>> grad_reverse(x, 0.5).sum().backward()
    >>> x.grad
    tensor([-0.5000, -0.5000, -0.5000])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, lambda_: float) -> Tensor:
        ctx.lambda_ = lambda_
        # view_as: a new tensor node, so autograd routes the gradient through backward() below.
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        return -ctx.lambda_ * grad_output, None


def grad_reverse(x: Tensor, lambda_: float = 1.0) -> Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-lambda_`` in the backward pass.

    Args:
        x: any tensor.
        lambda_: the reversal strength, ``>= 0``.

    Returns:
        ``x`` unchanged (a view).

    Raises:
        ValueError: if ``lambda_`` is negative or not finite.
    """
    if not math.isfinite(lambda_) or lambda_ < 0:
        raise ValueError(f"lambda_={lambda_} must be a finite number >= 0; use grl_lambda(p) for the ramp.")
    return _ReverseGrad.apply(x, float(lambda_))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; set ``lambda_`` before each forward pass.

    Args:
        lambda_: the initial reversal strength.
    """

    def __init__(self, lambda_: float = 1.0) -> None:
        super().__init__()
        self.lambda_ = float(lambda_)

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lambda_)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_:.4g}"


def grl_lambda(p: float, gamma: float = 10.0) -> float:
    """The DANN ramp ``2 / (1 + exp(-gamma * p)) - 1``: 0 at the start, close to 1 at the end.

    Starting at 0 keeps the noisy early domain signal from disturbing features that do not yet
    classify anything; the ramp then hands the adversary more weight as training progresses.

    Args:
        p: training progress in [0, 1] from the *planned* number of steps
            (``TrainState.progress`` in :func:`tlhelpers.training.engine.fit`).
        gamma: steepness; the paper's 10.

    Returns:
        ``lambda`` in [0, 1).

    Raises:
        ValueError: if ``p`` is outside [0, 1] or ``gamma`` is negative.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p={p} is not a training progress; pass step / total_steps, a value in [0, 1].")
    if gamma < 0:
        raise ValueError(f"gamma={gamma} must be >= 0; the paper uses 10.")
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0
