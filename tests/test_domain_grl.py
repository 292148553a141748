from __future__ import annotations

import math

import pytest
import torch

from tlhelpers.domain.grl import GradientReversal, grad_reverse, grl_lambda


def test_forward_is_identity():
    x = torch.randn(4, 7)
    assert torch.equal(grad_reverse(x, 0.7), x)
    assert torch.equal(GradientReversal(3.0)(x), x)


@pytest.mark.parametrize("lambda_", [0.0, 0.1, 0.5, 1.0, 2.5])
def test_gradient_is_exactly_minus_lambda_times_plain_gradient(lambda_):
    torch.manual_seed(0)
    w = torch.randn(5, 3)
    x = torch.randn(8, 5, requires_grad=True)
    torch.tanh(x @ w).pow(2).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    torch.tanh(grad_reverse(x, lambda_) @ w).pow(2).sum().backward()
    assert torch.equal(x.grad, -lambda_ * plain)


def test_module_uses_current_lambda_and_only_reverses_upstream():
    layer = GradientReversal(0.0)
    layer.lambda_ = 2.0
    x = torch.ones(3, requires_grad=True)
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (layer(x) * w).sum().backward()
    assert torch.equal(x.grad, -2.0 * w.detach())
    assert torch.equal(w.grad, torch.ones(3))  # layers after the GRL get plain gradients


def test_lambda_schedule_values():
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert grl_lambda(0.5) == pytest.approx(0.986614, abs=1e-6)
    assert grl_lambda(1.0) == pytest.approx(0.999909, abs=1e-6)
    assert grl_lambda(0.1) < grl_lambda(0.2) < grl_lambda(0.3)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_lambda_rejects_progress_outside_unit_interval(p):
    with pytest.raises(ValueError, match="progress"):
        grl_lambda(p)


def test_negative_lambda_rejected():
    with pytest.raises(ValueError, match="lambda_"):
        grad_reverse(torch.ones(2), -1.0)
