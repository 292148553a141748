"""MAML (Finn et al. 2017), second and first order, on ``torch.func``.

The model's weights are a plain dict ``params``; ``torch.func.functional_call(model, params, x)``
runs the network with them, and ``torch.func.grad`` differentiates a loss with respect to them.
The inner loop is then a pure function, ``params -> params - inner_lr * grad(loss)(params)``,
repeated ``inner_steps`` times. Differentiating the query loss *through* that loop gives the
second-order meta-gradient; cutting the inner gradients out of the graph gives first-order MAML,
whose meta-gradient is just the query-loss gradient at the adapted weights.

``meta_gradient`` batches the tasks of a meta-batch with ``torch.func.vmap`` (``vectorize=True``)
or loops over them; ``meta_gradient_autograd`` is the textbook loop with
``torch.autograd.grad(create_graph=True)``, kept for comparison and benchmarks.

Example:
    >>> model = Conv4(num_classes=5)
    >>> out = maml_step(model, batch, inner_lr=0.4, inner_steps=1)  # out.grads: the meta-gradient
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from tlhelpers.fewshot.evaluation import EvalResult, confidence_interval
from tlhelpers.fewshot.sampler import Episode, EpisodeSampler
from tlhelpers.models.conv4 import exact_batchnorm
from tlhelpers.training.engine import StepOutput

Params = dict[str, Tensor]


def get_params(model: nn.Module) -> Params:
    """The model's trainable parameters as a dict of detached tensors (the functional weights)."""
    return {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}


def _loss(model: nn.Module, params: Params, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(functional_call(model, params, (x,)), y)


def adapt(
    model: nn.Module, params: Params, x: Tensor, y: Tensor, *, inner_lr: float, inner_steps: int
) -> Params:
    """Run ``inner_steps`` of plain SGD on the support loss; a pure function of ``params``.

    Differentiable with respect to ``params`` (through ``torch.func.grad`` or autograd), which is
    what makes second-order MAML work.

    Args:
        model: the network, used only for its forward function.
        params: the starting weights (e.g. ``get_params(model)``).
        x: support images.
        y: support labels.
        inner_lr: inner-loop step size.
        inner_steps: number of SGD steps (0 returns ``params``).

    Returns:
        The adapted weights.

    Shape:
        x: ``(S, C, H, W)``; y: ``(S,)``.
    """
    grad_fn = grad(lambda p: _loss(model, p, x, y))
    for _ in range(inner_steps):
        g = grad_fn(params)
        params = {k: p - inner_lr * g[k] for k, p in params.items()}
    return params


def _task_loss(model: nn.Module, params: Params, task: tuple[Tensor, ...], inner_lr: float, inner_steps: int) -> tuple[Tensor, Tensor]:
    sx, sy, qx, qy = task
    adapted = adapt(model, params, sx, sy, inner_lr=inner_lr, inner_steps=inner_steps)
    logits = functional_call(model, adapted, (qx,))
    return F.cross_entropy(logits, qy), (logits.argmax(-1) == qy).float().mean()


def _first_order_task(model: nn.Module, params: Params, task: tuple[Tensor, ...], inner_lr: float, inner_steps: int) -> tuple[Params, tuple[Tensor, Tensor]]:
    sx, sy, qx, qy = task
    adapted = adapt(model, params, sx, sy, inner_lr=inner_lr, inner_steps=inner_steps)
    # First order: treat the adapted weights as independent leaves and take the query gradient there.
    adapted = {k: v.detach() for k, v in adapted.items()}

    def query_loss(p: Params) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        logits = functional_call(model, p, (qx,))
        loss = F.cross_entropy(logits, qy)
        return loss, (loss, (logits.argmax(-1) == qy).float().mean())

    return grad(query_loss, has_aux=True)(adapted)


def meta_gradient(
    model: nn.Module,
    batch: Episode,
    *,
    inner_lr: float,
    inner_steps: int,
    first_order: bool = False,
    vectorize: bool = True,
) -> tuple[Params, float, float]:
    """Meta-gradient of the mean post-adaptation query loss over a meta-batch, with ``torch.func``.

    Args:
        model: the network; its current weights are the meta-parameters.
        batch: stacked episodes (``EpisodeSampler.sample_batch``).
        inner_lr: inner-loop step size.
        inner_steps: inner SGD steps on each task's support set.
        first_order: drop second derivatives (FOMAML). Second-order MAML runs the model's
            ``BatchStatNorm2d`` layers in their exact form (``conv4.exact_batchnorm``) when
            ``vectorize`` is True, as the fused kernel's second derivatives are wrong under
            ``vmap``; everything else keeps the fused, faster form.
        vectorize: batch the tasks with ``torch.func.vmap``; False loops over them. On a shared
            2-core CPU we measured no consistent gain (vmap / plain autograd loop = 0.94 to 1.28
            for 4 tasks); on a GPU vmap is expected to pay, unmeasured here. ``benchmarks/fewshot.py``
            times vmap, this loop and the autograd loop on your hardware.

    Returns:
        ``(grads, loss, acc)``: the gradient of each parameter, the mean query loss and accuracy.

    Raises:
        ValueError: if ``batch`` is a single episode (stack it with ``stack_episodes``).
    """
    if batch.support_y.ndim != 2:
        raise ValueError("batch must be stacked episodes (T, ...); wrap one episode with stack_episodes([episode]).")
    params = get_params(model)
    tasks = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    num_tasks = batch.num_tasks
    if first_order:
        def one(task: tuple[Tensor, ...]) -> tuple[Params, tuple[Tensor, Tensor]]:
            return _first_order_task(model, params, task, inner_lr, inner_steps)

        if vectorize:
            grads, (losses, accs) = vmap(one)(tasks)
            grads = {k: v.mean(0) for k, v in grads.items()}
        else:
            outs = [one(tuple(t[i] for t in tasks)) for i in range(num_tasks)]
            grads = {k: torch.stack([o[0][k] for o in outs]).mean(0) for k in params}
            losses = torch.stack([o[1][0] for o in outs])
            accs = torch.stack([o[1][1] for o in outs])
        return grads, float(losses.mean()), float(accs.mean())

    def mean_loss(p: Params) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if vectorize:
            losses, accs = vmap(lambda task: _task_loss(model, p, task, inner_lr, inner_steps))(tasks)
        else:
            outs = [_task_loss(model, p, tuple(t[i] for t in tasks), inner_lr, inner_steps) for i in range(num_tasks)]
            losses, accs = torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
        return losses.mean(), (losses.mean(), accs.mean())

    # Second derivatives through the fused batch-norm kernel are wrong under vmap (about 1e-2
    # relative error in float64, torch 2.14): plain ops there; the task loop keeps the fused kernel.
    with exact_batchnorm(model) if vectorize else nullcontext():
        grads, (loss, acc) = grad(mean_loss, has_aux=True)(params)
    return grads, float(loss), float(acc)


def meta_gradient_autograd(
    model: nn.Module, batch: Episode, *, inner_lr: float, inner_steps: int, first_order: bool = False
) -> tuple[Params, float, float]:
    """The same meta-gradient with a plain per-task loop and ``torch.autograd.grad``.

    This is how MAML is usually written without ``torch.func``; it is here to check
    :func:`meta_gradient` and to time the two (``benchmarks/fewshot.py``).
    """
    names = [k for k, v in model.named_parameters() if v.requires_grad]
    params: Params = {k: v for k, v in model.named_parameters() if v.requires_grad}
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    losses, accs = [], []
    for t in range(batch.num_tasks):
        task = batch.task(t)
        fast = dict(params)
        for _ in range(inner_steps):
            loss = _loss(model, fast, task.support_x, task.support_y)
            g = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {k: p - inner_lr * gk for (k, p), gk in zip(fast.items(), g)}
        logits = functional_call(model, fast, (task.query_x,))
        loss = F.cross_entropy(logits, task.query_y)
        for k, gk in zip(names, torch.autograd.grad(loss, [params[k] for k in names])):
            total[k] += gk / batch.num_tasks
        losses.append(loss.item())
        accs.append((logits.argmax(1) == task.query_y).float().mean().item())
    return total, sum(losses) / len(losses), sum(accs) / len(accs)


def maml_step(model: nn.Module, batch: Episode, **kwargs: Any) -> StepOutput:
    """One meta-training step: the meta-gradient, computed here with ``torch.func``.

    The meta-gradient is not the gradient of a loss the loop could back-propagate, so the step
    hands it over in ``grads`` and the loop writes it into ``.grad`` (the rule of
    :class:`tlhelpers.training.engine.StepOutput`; ``engine.apply_gradients`` by hand).

    Args:
        model: the network.
        batch: stacked episodes.
        **kwargs: ``inner_lr``, ``inner_steps``, ``first_order``, ``vectorize`` of :func:`meta_gradient`.

    Returns:
        The post-adaptation query loss (a detached scalar), ``metrics["train_acc"]`` (its accuracy)
        and ``grads``, the meta-gradient of every trainable parameter.
    """
    grads, loss, acc = meta_gradient(model, batch, **kwargs)
    return StepOutput(torch.tensor(loss), metrics={"train_acc": acc}, grads={k: g.detach() for k, g in grads.items()})


def adaptation_curve(model: nn.Module, episode: Episode, *, inner_lr: float, max_steps: int) -> Tensor:
    """Query accuracy of one episode after 0, 1, ..., ``max_steps`` inner SGD steps.

    Returns:
        Accuracies, entry ``s`` after ``s`` steps (entry 0 is before adaptation).

    Shape:
        returns ``(max_steps + 1,)``.
    """
    params = get_params(model)
    accs = []
    for step in range(max_steps + 1):
        with torch.no_grad():
            logits = functional_call(model, params, (episode.query_x,))
        accs.append((logits.argmax(1) == episode.query_y).float().mean())
        if step < max_steps:
            params = adapt(model, params, episode.support_x, episode.support_y, inner_lr=inner_lr, inner_steps=1)
    return torch.stack(accs)


def maml_predict(model: nn.Module, episode: Episode, *, inner_lr: float, inner_steps: int) -> Tensor:
    """Adapt to the support set, then return the query logits (for ``evaluate_episodes``).

    Shape:
        returns ``(N*Q, N)``.
    """
    adapted = adapt(model, get_params(model), episode.support_x, episode.support_y, inner_lr=inner_lr, inner_steps=inner_steps)
    with torch.no_grad():
        return functional_call(model, adapted, (episode.query_x,))


def adaptation_results(
    model: nn.Module, sampler: EpisodeSampler, *, inner_lr: float, max_steps: int, num_episodes: int = 600, seed: int = 0
) -> list[EvalResult]:
    """Mean query accuracy (with 95 % interval) after 0..``max_steps`` inner steps, over seeded episodes.

    Returns:
        One :class:`EvalResult` per number of inner steps; entry 0 is before adaptation.

    Raises:
        ValueError: if ``num_episodes`` < 2.
    """
    if num_episodes < 2:
        raise ValueError(f"num_episodes={num_episodes} must be at least 2 for a confidence interval.")
    device = next(model.parameters()).device
    curves = torch.stack([
        adaptation_curve(model, ep.to(device), inner_lr=inner_lr, max_steps=max_steps).cpu()
        for ep in sampler.episodes(num_episodes, seed)
    ])
    return [EvalResult(*confidence_interval(curves[:, s]), num_episodes, accs=curves[:, s].tolist()) for s in range(max_steps + 1)]
