from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlhelpers.fewshot.evaluation import evaluate_episodes
from tlhelpers.fewshot.protomaml import (
    protomaml_adapt,
    protomaml_head,
    protomaml_meta_gradient,
    protomaml_predict,
    protomaml_step,
)
from tlhelpers.fewshot.protonet import protonet_logits, protonet_predict
from tlhelpers.fewshot.sampler import Episode, EpisodeSampler
from tlhelpers.fewshot.training import meta_train
from tlhelpers.models.conv4 import Conv4
from tlhelpers.training.engine import apply_gradients

INNER_LR = 0.2
Forward = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.Tanh(), nn.Linear(6, 4))


def _mlp_forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The MLP written out with explicit tensors, independent of the package."""
    return F.linear(torch.tanh(F.linear(x.flatten(1), p["1.weight"], p["1.bias"])), p["3.weight"], p["3.bias"])


def _conv4_forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Conv-4 features written out with torch.nn.functional (the head is not used by ProtoMAML)."""
    for i in range(4):
        x = F.conv2d(x, p[f"encoder.{i}.0.weight"], p[f"encoder.{i}.0.bias"], padding=1)
        x = F.batch_norm(x, None, None, p[f"encoder.{i}.1.weight"], p[f"encoder.{i}.1.bias"], training=True)
        x = F.max_pool2d(F.relu(x), 2)
    return x.flatten(1)


def _setup(kind: str = "mlp", num_tasks: int = 2) -> tuple[nn.Module, Forward, Episode]:
    torch.manual_seed(0)
    side = 8 if kind == "mlp" else 16
    model: nn.Module = _mlp() if kind == "mlp" else Conv4(hidden=4, image_size=16, num_classes=3)
    forward = _mlp_forward if kind == "mlp" else _conv4_forward
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, side, side), dtype=torch.uint8, generator=gen)
    sampler = EpisodeSampler(images, torch.arange(5).repeat_interleave(8), n_way=3, k_shot=2, n_query=2)
    batch = sampler.sample_batch(num_tasks, gen)
    batch.support_x, batch.query_x = batch.support_x.double(), batch.query_x.double()
    return model.double(), forward, batch


def _reference(
    model: nn.Module, forward: Forward, batch: Episode, steps: int, first_order: bool, adapt_backbone: bool = True
) -> dict[str, torch.Tensor]:
    """ProtoMAML's meta-gradient with plain autograd on explicit tensors (no torch.func).

    Second order: inner SGD with create_graph=True, the query loss differentiated back to theta.
    First order: the query gradient at the adapted weights (fresh leaves), the head's part chained
    by hand through the prototype initialisation (a vector-Jacobian product at theta).
    """
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    total = {k: torch.zeros_like(v) for k, v in theta.items()}
    for t in range(batch.num_tasks):
        sx, sy, qx, qy = batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t]
        emb = forward(theta, sx)
        protos = torch.stack([emb[sy == c].mean(0) for c in range(3)])
        w0, b0 = 2 * protos, -(protos**2).sum(1)
        # The head is a parameter of its own in the inner loop: clone theta so that the inner
        # gradients are partial derivatives (not through the prototypes that w0 and b0 depend on).
        fast, w, b = {k: v.clone() for k, v in theta.items()}, w0, b0
        for _ in range(steps):
            feats = forward(fast, sx) if adapt_backbone else emb
            loss = F.cross_entropy(feats @ w.T + b, sy)
            inputs = [*fast.values(), w, b] if adapt_backbone else [w, b]
            grads = torch.autograd.grad(loss, inputs, create_graph=not first_order, retain_graph=True, allow_unused=True)
            if adapt_backbone:
                fast = {k: v - INNER_LR * (g if g is not None else 0) for (k, v), g in zip(fast.items(), grads)}
            w, b = w - INNER_LR * grads[-2], b - INNER_LR * grads[-1]
        if first_order:
            leaves = {k: v.detach().requires_grad_(True) for k, v in fast.items()}
            wl, bl = w.detach().requires_grad_(True), b.detach().requires_grad_(True)
            ql = F.cross_entropy(forward(leaves, qx) @ wl.T + bl, qy)
            *g_fast, g_w, g_b = torch.autograd.grad(ql, [*leaves.values(), wl, bl], allow_unused=True)
            g_init = torch.autograd.grad([w0, b0], list(theta.values()), grad_outputs=[g_w, g_b], allow_unused=True)
            grads = tuple((gf if gf is not None else 0) + (gi if gi is not None else 0) for gf, gi in zip(g_fast, g_init))
        else:
            ql = F.cross_entropy(forward(fast, qx) @ w.T + b, qy)
            grads = torch.autograd.grad(ql, list(theta.values()), allow_unused=True)
        for k, g in zip(theta, grads):
            if g is not None:
                total[k] = total[k] + g / batch.num_tasks
    return total


def test_zero_steps_equal_protonet_up_to_a_constant_per_query() -> None:
    model, forward, batch = _setup("mlp", 1)
    task = batch.task(0)
    logits = protomaml_predict(model, task, inner_lr=INNER_LR, inner_steps=0)
    proto = protonet_logits(model, task)  # -||q - p_c||^2
    diff = logits - proto
    torch.testing.assert_close(diff, diff[:, :1].expand_as(diff))
    # The constant is ||q||^2 (independent check of W = 2p, b = -||p||^2).
    params: dict[str, torch.Tensor] = dict(model.named_parameters())
    torch.testing.assert_close(diff[:, 0], forward(params, task.query_x).pow(2).sum(1).detach())
    assert torch.equal(logits.argmax(1), protonet_predict(model, task).argmax(1))
    weight, bias = protomaml_head(forward(params, task.support_x), task.support_y, 3)
    assert weight.shape == (3, 4) and bias.shape == (3,) and weight.grad_fn is not None  # part of the graph


@pytest.mark.parametrize("kind", ["mlp", "conv4"])
@pytest.mark.parametrize("steps", [1, 2])
def test_second_order_meta_gradient_matches_plain_autograd(kind: str, steps: int) -> None:
    model, forward, batch = _setup(kind)
    ref = _reference(model, forward, batch, steps, first_order=False)
    grads, loss, acc = protomaml_meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=steps)
    assert set(grads) == set(ref)
    for k in ref:
        torch.testing.assert_close(grads[k], ref[k], rtol=1e-6, atol=1e-9, msg=k)
    assert loss > 0 and 0.0 <= acc <= 1.0
    if kind == "conv4":  # the classifier head is not part of the embedding: zero gradient
        assert not grads["head.weight"].any()


@pytest.mark.parametrize("kind", ["mlp", "conv4"])
def test_first_order_matches_hand_written_reference_and_differs_from_second_order(kind: str) -> None:
    model, forward, batch = _setup(kind)
    ref = _reference(model, forward, batch, 2, first_order=True)
    fo, _, _ = protomaml_meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=2, first_order=True)
    so, _, _ = protomaml_meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=2)
    for k in ref:
        torch.testing.assert_close(fo[k], ref[k], rtol=1e-6, atol=1e-9, msg=k)
    assert any(not torch.allclose(so[k], fo[k]) for k in so)
    # The prototype path is kept: first order is not the plain gradient at the adapted weights alone.
    assert any(fo[k].abs().sum() > 0 for k in fo)


@pytest.mark.parametrize("first_order", [False, True])
def test_head_only_adaptation_matches_reference(first_order: bool) -> None:
    model, forward, batch = _setup("mlp")
    ref = _reference(model, forward, batch, 2, first_order=first_order, adapt_backbone=False)
    grads, _, _ = protomaml_meta_gradient(
        model, batch, inner_lr=INNER_LR, inner_steps=2, first_order=first_order, adapt_backbone=False
    )
    for k in ref:
        torch.testing.assert_close(grads[k], ref[k], rtol=1e-6, atol=1e-9, msg=k)
    task = batch.task(0)
    adapted, _, _ = protomaml_adapt(
        model, None, task.support_x, task.support_y, 3, inner_lr=INNER_LR, inner_steps=2, adapt_backbone=False
    )
    for k, v in model.named_parameters():
        assert torch.equal(adapted[k], v)


@pytest.mark.parametrize("adapt_backbone", [True, False])
def test_inner_steps_lower_support_loss_and_leave_the_backbone_untouched(adapt_backbone: bool) -> None:
    model, forward, batch = _setup("mlp", 1)
    task = batch.task(0)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses = []
    for steps in (0, 3):
        params, w, b = protomaml_adapt(
            model, None, task.support_x, task.support_y, 3, inner_lr=INNER_LR, inner_steps=steps,
            adapt_backbone=adapt_backbone,
        )
        losses.append(float(F.cross_entropy(forward(params, task.support_x) @ w.T + b, task.support_y)))
    assert losses[1] < losses[0]
    logits = protomaml_predict(model, task, inner_lr=INNER_LR, inner_steps=3, adapt_backbone=adapt_backbone)
    assert logits.shape == (len(task.query_y), 3) and not logits.requires_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_step_hands_the_meta_gradient_to_the_loop() -> None:
    model, _, batch = _setup("conv4")
    out = protomaml_step(model, batch, inner_lr=INNER_LR, inner_steps=1)
    grads, loss, acc = protomaml_meta_gradient(model, batch, inner_lr=INNER_LR, inner_steps=1)
    assert float(out.loss) == pytest.approx(loss) and out.metrics == {"train_acc": acc}
    assert all(p.grad is None for p in model.parameters())
    apply_gradients(model, out)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[k])
    first = dict(model.named_parameters())["encoder.0.0.weight"].grad
    assert first is not None and first.abs().sum() > 0


def _easy_samplers() -> tuple[EpisodeSampler, EpisodeSampler]:
    """Class identity lives in the first 8 pixels; the other 56 are noise a random embedding mixes in."""
    gen = torch.Generator().manual_seed(0)
    classes, per = 24, 10
    signal = torch.rand(classes, 8, generator=gen) * 255
    x = torch.rand(classes * per, 64, generator=gen) * 255
    x[:, :8] = 0.85 * signal.repeat_interleave(per, 0) + 0.15 * x[:, :8]
    images = x.round().to(torch.uint8).view(-1, 1, 8, 8)
    labels = torch.arange(classes).repeat_interleave(per)
    seen = labels < 16
    return (
        EpisodeSampler(images[seen], labels[seen], n_way=3, k_shot=1, n_query=3),
        EpisodeSampler(images[~seen], labels[~seen], n_way=3, k_shot=1, n_query=3),
    )


def test_meta_training_improves_accuracy_on_unseen_classes() -> None:
    torch.manual_seed(0)
    net = _mlp()
    train, test = _easy_samplers()

    def accuracy() -> float:
        result = evaluate_episodes(lambda ep: protomaml_predict(net, ep, inner_lr=0.1, inner_steps=1), test, num_episodes=60, progress=False)
        return result.mean

    before = accuracy()
    history = meta_train(
        net, lambda m, b: protomaml_step(m, b, inner_lr=0.1, inner_steps=1), train, 60, meta_batch=2, lr=1e-2, device="cpu",
        progress=False, eval_every=20,
    )
    after = accuracy()
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert after > before + 0.2 and after > 0.55, (before, after)  # chance is 1/3


def test_bad_input_is_refused_in_one_line() -> None:
    model, forward, batch = _setup("mlp", 1)
    task = batch.task(0)
    cases = [
        (lambda: protomaml_predict(model, task, inner_lr=0.1, inner_steps=-1), "inner_steps"),
        (lambda: protomaml_step(model, batch, inner_lr=0.1, inner_steps=-2), "inner_steps"),
        (lambda: protomaml_predict(model, task, inner_lr=0.1, inner_steps=1, n_way=5), "n_way=5"),
        (lambda: protomaml_head(torch.zeros(6, 4), task.support_y, 2), "n_way=2"),
        (lambda: protomaml_head(torch.zeros(5, 4), task.support_y, 3), "disagree"),
        (lambda: protomaml_step(model, task, inner_lr=0.1, inner_steps=1), "stack_episodes"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match) as info:
            fn()
        assert "\n" not in str(info.value)
