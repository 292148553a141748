from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tlhelpers.fewshot.maml import (
    adapt,
    adaptation_curve,
    get_params,
    maml_predict,
    maml_step,
    meta_gradient,
    meta_gradient_autograd,
)
from tlhelpers.fewshot.sampler import EpisodeSampler, stack_episodes
from tlhelpers.models.conv4 import Conv4
from tlhelpers.training.engine import apply_gradients

INNER_LR = 0.3


def _setup(num_tasks: int = 2) -> tuple[Conv4, object]:
    torch.manual_seed(0)
    model = Conv4(hidden=4, image_size=16, num_classes=3).double()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8, generator=gen)
    sampler = EpisodeSampler(images, torch.arange(5).repeat_interleave(8), n_way=3, k_shot=2, n_query=2)
    batch = sampler.sample_batch(num_tasks, gen)
    batch.support_x, batch.query_x = batch.support_x.double(), batch.query_x.double()
    return model, batch


def _forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Conv-4 written out with torch.nn.functional, independent of the package's modules."""
    for i in range(4):
        x = F.conv2d(x, p[f"encoder.{i}.0.weight"], p[f"encoder.{i}.0.bias"], padding=1)
        x = F.batch_norm(x, None, None, p[f"encoder.{i}.1.weight"], p[f"encoder.{i}.1.bias"], training=True)
        x = F.max_pool2d(F.relu(x), 2)
    return F.linear(x.flatten(1), p["head.weight"], p["head.bias"])


def _reference(model: Conv4, batch, steps: int, first_order: bool) -> dict[str, torch.Tensor]:
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    total = {k: torch.zeros_like(v) for k, v in theta.items()}
    for t in range(batch.num_tasks):
        sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
        fast = dict(theta)
        for _ in range(steps):
            loss = F.cross_entropy(_forward(fast, sx), sy)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {k: w - INNER_LR * g for (k, w), g in zip(fast.items(), grads)}
        if first_order:  # gradient at the adapted weights, taken as fresh leaves
            fast = {k: w.detach().requires_grad_(True) for k, w in fast.items()}
            grads = torch.autograd.grad(F.cross_entropy(_forward(fast, qx), qy), list(fast.values()))
        else:
            grads = torch.autograd.grad(F.cross_entropy(_forward(fast, qx), qy), list(theta.values()))
        for k, g in zip(theta, grads):
            total[k] += g / batch.num_tasks
    return total


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("vectorize", [True, False])
def test_meta_gradient_matches_independent_autograd(steps: int, first_order: bool, vectorize: bool) -> None:
    model, batch = _setup()
    ref = _reference(model, batch, steps, first_order)
    grads, loss, acc = meta_gradient(
        model, batch, inner_lr=INNER_LR, inner_steps=steps, first_order=first_order, vectorize=vectorize
    )
    assert set(grads) == set(ref)
    for k in ref:
        torch.testing.assert_close(grads[k], ref[k], rtol=1e-6, atol=1e-8, msg=k)
    assert 0.0 <= acc <= 1.0 and loss > 0


@pytest.mark.parametrize("first_order", [False, True])
def test_plain_autograd_loop_agrees(first_order: bool) -> None:
    model, batch = _setup()
    a, loss_a, _ = meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=2, first_order=first_order)
    b, loss_b, _ = meta_gradient_autograd(model, batch, inner_lr=INNER_LR, inner_steps=2, first_order=first_order)
    assert loss_a == pytest.approx(loss_b, rel=1e-9)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-8)


def test_meta_gradient_leaves_batchnorm_fused() -> None:
    from tlhelpers.models.conv4 import BatchStatNorm2d

    model, batch = _setup()
    meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=1)
    assert not any(m.exact for m in model.modules() if isinstance(m, BatchStatNorm2d))


def test_second_order_differs_from_first_order() -> None:
    model, batch = _setup()
    so, _, _ = meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=1)
    fo, _, _ = meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=1, first_order=True)
    assert any(not torch.allclose(so[k], fo[k]) for k in so)


def test_adaptation_lowers_support_loss() -> None:
    model, batch = _setup(1)
    task = batch.task(0)
    params = get_params(model)
    before = F.cross_entropy(_forward(params, task.support_x), task.support_y)
    adapted = adapt(model, params, task.support_x, task.support_y, inner_lr=0.1, inner_steps=3)
    after = F.cross_entropy(_forward(adapted, task.support_x), task.support_y)
    assert after < before
    # Conv biases before BatchNorm get (almost) zero gradient, as normalisation removes them.
    for k in ("head.weight", "encoder.0.0.weight", "encoder.3.1.weight"):
        assert not torch.allclose(params[k], adapted[k]), k
    curve = adaptation_curve(model, task, inner_lr=0.1, max_steps=3)
    assert curve.shape == (4,)
    logits = maml_predict(model, task, inner_lr=0.1, inner_steps=3)
    assert logits.shape == (len(task.query_y), 3)
    assert float((logits.argmax(1) == task.query_y).float().mean()) == pytest.approx(float(curve[3]))


def test_maml_step_writes_grad_into_every_parameter() -> None:
    model, batch = _setup()
    out = maml_step(model, batch, inner_lr=INNER_LR, inner_steps=1)
    grads, loss, acc = meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=1)
    assert float(out.loss) == pytest.approx(loss) and out.metrics == {"train_acc": acc}
    assert all(p.grad is None for p in model.parameters())  # the step hands its gradient to the loop
    apply_gradients(model, out)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[k])
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.head.weight.grad.abs().sum() > 0 and model.encoder[0][0].weight.grad.abs().sum() > 0


def test_single_episode_is_rejected_with_the_fix() -> None:
    model, batch = _setup(1)
    with pytest.raises(ValueError, match="stack_episodes"):
        meta_gradient(model, batch.task(0), inner_lr=0.1, inner_steps=1)
    assert stack_episodes([batch.task(0)]).num_tasks == 1


def test_adaptation_results_start_before_adaptation() -> None:
    from tlhelpers.fewshot.maml import adaptation_results

    model, _ = _setup()
    model = model.float()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8, generator=gen)
    sampler = EpisodeSampler(images, torch.arange(5).repeat_interleave(8), n_way=3, k_shot=2, n_query=2)
    results = adaptation_results(model, sampler, inner_lr=0.1, max_steps=2, num_episodes=4)
    assert len(results) == 3 and all(r.num_episodes == 4 for r in results)
    first = next(sampler.episodes(1, 0))
    assert results[0].accs[0] == pytest.approx(float(adaptation_curve(model, first, inner_lr=0.1, max_steps=0)[0]))


def _relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    diff = torch.sqrt(sum((a[k] - b[k]).pow(2).sum() for k in b))
    return float(diff / torch.sqrt(sum(v.pow(2).sum() for v in b.values())))


def test_vmap_meta_gradient_is_rounding_close_in_float64_and_the_fused_rule_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """What chapter 4b's float64 check relies on: rounding is ~1e-13 there, the wrong rule ~1e-2."""
    from contextlib import nullcontext

    import tlhelpers.fewshot.maml as maml

    model, batch = _setup(4)
    ref = _reference(model, batch, 1, first_order=False)
    grads, _, _ = meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=1)
    assert _relative(grads, ref) < 1e-10
    monkeypatch.setattr(maml, "exact_batchnorm", lambda m: nullcontext())  # the fused kernel under vmap
    wrong, _, _ = meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=1)
    assert _relative(wrong, ref) > 1e-4, (
        "the fused batch norm now has correct second derivatives under vmap (pytorch/functorch#534 fixed?): "
        "conv4.exact_batchnorm may no longer be needed"
    )
